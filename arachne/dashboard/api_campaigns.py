"""API routes of campaigns: create, run, pause/resume/cancel, submit URLs (see api.py)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from redis import Redis
from redis.exceptions import RedisError

from arachne.dashboard.api import (
    MAX_URL_LENGTH,
    actor_of,
    call,
    choice,
    int_field,
    only,
    read_body,
    redis_of,
    strings,
    url_list,
)
from arachne.dashboard.security import requires
from arachne.dashboard.views import SETTINGS, json_response
from arachne.errors import CampaignBusy, RunStateError
from arachne.queue.connection import PRIORITIES
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import AuditLog
from arachne.store.summary import get_campaign
from arachne.urls import host_of

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A campaign created through the API: a name that is safe in a URL path as it is."""
MAX_SEEDS = 1_000
MAX_HOSTS = 100
MAX_URLS = 1_000
"""URLs one ``POST .../urls`` may submit."""
ROBOTS = ("obey", "record", "ignore")
CONTROL = {"pause": "paused", "resume": "running", "cancel": "cancelled"}
RUNS = web.AppKey("api_runs", dict)
"""campaign name -> the `arachne run` process this dashboard started for it."""


def setup(app: web.Application) -> None:
    app[RUNS] = {}
    add = app.router
    add.add_post("/api/campaigns", create_campaign, name="api_campaign_create")
    add.add_post("/api/campaigns/{name}/run", run_campaign, name="api_campaign_run")
    for action in CONTROL:
        add.add_post(
            f"/api/campaigns/{{name}}/{action}",
            _control_handler(action),
            name=f"api_campaign_{action}",
        )
    add.add_post("/api/campaigns/{name}/urls", submit_urls, name="api_campaign_urls")


@requires("operator")
async def create_campaign(request: web.Request) -> web.Response:
    """Like `arachne campaign create`: seeds, extra hosts, budgets, priority, robots."""
    body = await read_body(request)
    fields = {
        "name",
        "seeds",
        "allow_hosts",
        "max_depth",
        "max_pages",
        "max_pages_per_host",
        "stop_after",
        "robots",
        "priority",
    }
    only(body, fields)
    name = body.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise web.HTTPBadRequest(
            text="name must be 1 to 100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    seeds = url_list(
        strings(body, "seeds", most=MAX_SEEDS, longest=MAX_URL_LENGTH, least=1), "seeds"
    )
    hosts = strings(body, "allow_hosts", most=MAX_HOSTS, longest=253)
    if any(re.search(r"[\s/@?#]", h) for h in hosts):
        raise web.HTTPBadRequest(text="allow_hosts are host names (no scheme, path or port)")
    s = request.app[SETTINGS]
    options = {
        "max_depth": int_field(body, "max_depth", 0, 1000),
        "max_pages": int_field(body, "max_pages", 1, 10**9),
        "max_pages_per_host": int_field(body, "max_pages_per_host", 1, 10**9),
        "stop_after": int_field(body, "stop_after", 1, 10**9),
        "robots": choice(body, "robots", ROBOTS),
        "priority": choice(body, "priority", PRIORITIES),
    }
    data = await call(request, _create, s, name, seeds, hosts, options, actor_of(request))
    response = json_response(data, status=201)
    response.headers["Location"] = str(request.app.router["api_stats"].url_for(name=name))
    return response


def _create(
    store: Store,
    s: Settings,
    name: str,
    seeds: list[str],
    hosts: list[str],
    o: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    from arachne.crawler.scope import Scope
    from arachne.store.campaigns import create_campaign as create

    try:
        scope = Scope.for_seeds(
            seeds,
            hosts,
            max_depth=o["max_depth"] if o["max_depth"] is not None else s.max_depth,
            max_pages=o["max_pages"] or s.max_pages,
            max_pages_per_host=o["max_pages_per_host"] or 0,
            stop_after=o["stop_after"] or 0,
            priority=o["priority"] or "normal",
            robots=o["robots"] or ("obey" if s.obey_robots else "ignore"),
        )
    except ValueError as exc:  # no host, malformed IPv6 literal, bad port
        raise web.HTTPBadRequest(text=str(exc)) from None
    with store.session() as session:
        c = create(session, name, seeds, scope.as_json(), actor=actor)
        return {
            "name": c.name,
            "status": c.status,
            "seeds": list(c.seeds),
            "scope": dict(c.scope),
            "created_at": c.created_at.isoformat(),
        }


@requires("operator")
async def run_campaign(request: web.Request) -> web.Response:
    """Start `arachne run NAME` in the background, as an operator would in a terminal."""
    name = request.match_info["name"]
    body = await read_body(request, optional=True)
    only(body, {"workers"})
    workers = int_field(body, "workers", 1, 64)
    runs: dict[str, subprocess.Popen[bytes]] = request.app[RUNS]
    for key in [k for k, proc in runs.items() if proc.poll() is not None]:
        del runs[key]  # reaped: finished runs leave no zombie behind
    if name in runs:
        raise web.HTTPConflict(
            text=f"campaign {name!r} is already being run (pid {runs[name].pid}, started here)"
        )
    redis = await redis_of(request, required=False)
    await call(request, _check_runnable, redis, name)
    settings = request.app[SETTINGS]
    proc, log = await asyncio.to_thread(spawn_run, settings, name, workers)
    runs[name] = proc
    return json_response(
        {
            "campaign": name,
            "pid": proc.pid,
            "workers": workers or settings.workers,
            "log": str(log),
        },
        status=202,
    )


def _check_runnable(store: Store, redis: Redis | None, name: str) -> None:
    """Refuse what `arachne run` would refuse: unknown, paused, or run by someone now."""
    from arachne.queue import keys
    from arachne.runner import run_lock
    from arachne.store.runs import latest_run

    with store.session() as session:
        run = latest_run(session, get_campaign(session, name).id)
        if run is not None and run.status == "paused":
            raise RunStateError(
                f"run {run.number} of {name!r} is paused: resume it (POST .../resume) or "
                "cancel it (POST .../cancel)"
            )
    with store.exclusive(run_lock(name), wait=False) as free:
        if free:
            return
    who = "another process"
    try:
        holder = redis.get(keys.campaign_runner(name)) if redis is not None else None
        who = holder.decode() if holder else who
    except (RedisError, OSError):
        pass
    raise CampaignBusy(f"campaign {name!r} is already being run by {who}")


def spawn_run(
    settings: Settings, name: str, workers: int | None
) -> tuple[subprocess.Popen[bytes], Path]:
    """`arachne run NAME`, detached (its own session: it outlives a dashboard restart), with
    the dashboard's settings in its environment and its output in a log file."""
    from arachne.runner import run_lock

    logs = Path(settings.data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60]
    log = logs / f"run-{safe}-{run_lock(name)[4:12]}.log"
    args = [sys.executable, "-m", "arachne", "run", name]
    if workers:
        args += ["--workers", str(workers)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            env=settings.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def _control_handler(action: str) -> Callable[[web.Request], Any]:
    @requires("operator")
    async def control(request: web.Request) -> web.Response:
        """Like `arachne campaign pause|resume|cancel NAME`."""
        from arachne.runner import control_campaign

        name = request.match_info["name"]
        redis = await redis_of(request)  # answering before the store changes: both must agree
        number = await call(request, control_campaign, redis, name, action)
        return json_response({"campaign": name, "run": number, "status": CONTROL[action]})

    control.__name__ = f"campaign_{action}"
    return control


@requires("operator")
async def submit_urls(request: web.Request) -> web.Response:
    """Page URLs as new seeds (the running crawl gets them too), or image URLs straight to
    the workers in the campaign's current run."""
    name = request.match_info["name"]
    body = await read_body(request)
    only(body, {"urls", "as"})
    urls = url_list(strings(body, "urls", most=MAX_URLS, longest=MAX_URL_LENGTH, least=1), "urls")
    kind = choice(body, "as", ("seeds", "images")) or "seeds"
    settings, actor = request.app[SETTINGS], actor_of(request)
    if kind == "images":
        redis = await redis_of(request)
        data = await call(request, _queue_images, settings, redis, name, urls, actor)
    else:
        redis = await redis_of(request, required=False)  # without: seeds for the next run
        data = await call(request, _add_seeds, redis, name, urls, actor)
    return json_response({"campaign": name, "as": kind, **data})


#: A seed in a run's frontier, as the spider's scheduler stores it (``FrontierScheduler.
#: _entry`` of ``CampaignSpider._request(url, depth=0)``; a test keeps the two equal).
SEED_DATA = {
    "cb": "parse",
    "eb": "page_failed",
    "kw": {"depth": 0},
    "m": {"arachne_from_page": None},
}


def _add_seeds(
    store: Store, redis: Redis | None, name: str, urls: list[str], actor: str
) -> dict[str, Any]:
    """New seeds for every later run, their hosts in scope (as at creation); the run in
    progress gets those its spiders may crawl now (hosts already in its scope)."""
    from arachne.crawler.frontier import Budgets, Entry, Frontier
    from arachne.crawler.scope import Scope, normalize_url
    from arachne.store.runs import FINISHED, latest_run

    with store.session() as session:
        campaign = get_campaign(session, name)
        before = Scope.from_json(dict(campaign.scope or {}))
        new = [u for u in urls if u not in set(campaign.seeds)]
        scope = dict(campaign.scope or {})
        scope["allowed_hosts"] = sorted(
            set(scope.get("allowed_hosts", [])) | set(map(host_of, new))
        )
        campaign.seeds, campaign.scope = [*campaign.seeds, *new], scope
        session.add(
            AuditLog(actor=actor, action="campaign.seeds", detail={"name": name, "added": new})
        )
        run = latest_run(session, campaign.id)
        number = run.number if run is not None and run.status not in FINISHED else None
    frontier = None
    now = [u for u in urls if before.allows(u)]
    if number is not None and redis is not None and now:
        budgets = Budgets(pages=before.max_pages, pages_per_host=before.max_pages_per_host)
        entries = [
            Entry(url=u, host=host_of(u), data=SEED_DATA, key_url=normalize_url(u)) for u in now
        ]
        try:
            added = Frontier(redis, name, number, budgets=budgets).add(entries)
        except (RedisError, OSError):
            added = None  # stored as seeds: the next run (or a resume) crawls them
        if added is not None:
            frontier = {
                "run": number,
                "added": added.added,
                "duplicate": added.duplicate,
                "capped": added.capped + added.capped_host,
            }
    return {"seeds_added": len(new), "seeds_known": len(urls) - len(new), "frontier": frontier}


def _queue_images(
    store: Store, settings: Settings, redis: Redis, name: str, urls: list[str], actor: str
) -> dict[str, Any]:
    """Image URLs as found by the campaign's current run: fetched, hashed and matched by
    the workers (each once a run)."""
    from arachne.queue.connection import image_queue
    from arachne.queue.enqueue import Enqueuer, ImageRef
    from arachne.store.runs import FINISHED, latest_run

    with store.session() as session:
        campaign = get_campaign(session, name)
        run = latest_run(session, campaign.id)
        if run is None or run.status in FINISHED:
            raise RunStateError(
                f"campaign {name!r} has no run in progress to queue images in: start one "
                "(POST .../run) or submit the URLs as seeds"
            )
        number, priority = run.number, (campaign.scope or {}).get("priority", "normal")
        session.add(
            AuditLog(
                actor=actor,
                action="campaign.images",
                detail={"name": name, "run": number, "urls": len(urls)},
            )
        )
    enqueuer = Enqueuer(
        redis,
        image_queue(redis, settings, priority),
        name,
        run=number,
        batch_size=settings.batch_size,
        retries=settings.job_retries,
        retry_backoff=settings.retry_backoff,
        job_timeout=settings.job_timeout,
    )
    queued = enqueuer.add(ImageRef(url=u, page=None, campaign=name) for u in urls)
    enqueuer.flush()
    return {"run": number, "queued": queued, "known": len(urls) - queued}
