"""The console's other pages (workers, notices, lists), the JSON its live parts poll, static.

The overview and campaign pages render in views.py; their live parts poll
``/api/overview``, ``/api/campaigns/{name}/stats`` and ``.../series`` from static/app.js.
Everything needs a login (security.py) except ``/static/app.css``, which the login form uses.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from redis.exceptions import RedisError

from arachne.dashboard import reads, series
from arachne.dashboard.security import IDENTITY, audit, requires
from arachne.dashboard.views import (
    API_MAX_LIMIT,
    LIVE,
    STORE,
    LiveSource,
    _int,
    _read,
    error_filter,
    json_response,
    read_overview,
    render,
)
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.summary import get_campaign

STATIC = Path(__file__).parent / "static"
#: What an rq job id may look like (rq's are uuid4 hex; ours add a readable prefix).
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
#: Campaign fields the overview polls (the rest of a summary stays on the campaign page).
OVERVIEW_FIELDS = (
    "campaign", "status", "run", "pages", "images_found", "images_queued", "images_fetched",
    "images_hashed", "matches", "hosts_with_matches", "notices", "started_at", "finished_at",
    "rates",
)  # fmt: skip


def setup(app: web.Application) -> None:
    add = app.router.add_get
    add("/workers", workers_page, name="workers")
    add("/notices", notices_page, name="notices")
    add("/notices.csv", notices_csv, name="notices_csv")
    add("/lists", lists_page, name="lists")
    add("/api/overview", api_overview, name="api_overview")
    add("/api/campaigns/{name}/series", api_series, name="api_series")
    add("/api/campaigns/{name}/errors", api_errors, name="api_errors")
    add("/api/workers", api_workers, name="api_workers")
    add("/api/notices", api_notices_all, name="api_notices_all")
    app.router.add_post("/api/jobs/{id}/requeue", api_requeue, name="api_requeue")
    app.router.add_static("/static", STATIC, name="static", append_version=False)


# -- overview and campaign (polled) -------------------------------------------------------


async def api_overview(request: web.Request) -> web.Response:
    data = await _read(request, read_overview, request.app[LIVE])
    data["campaigns"] = [{k: row.get(k) for k in OVERVIEW_FIELDS} for row in data["campaigns"]]
    return json_response(data)


def read_series(store: Store, live: LiveSource, name: str, resolution: str) -> dict[str, Any]:
    with store.session() as session:
        status = get_campaign(session, name).status
    redis = live._client()
    try:
        if redis is not None:
            data = series.campaign_series(redis, name, resolution, running=status == "running")
            return {**data, "status": status, "live": True}
    except (RedisError, OSError):
        pass
    # Unreachable: the chart says so; the bucketing itself still checks the resolution.
    return {
        "campaign": name,
        "status": status,
        "live": False,
        **series.build_series({}, {}, resolution),
    }


async def api_series(request: web.Request) -> web.Response:
    resolution = request.query.get("resolution", "auto")
    name = request.match_info["name"]
    try:
        data = await _read(request, read_series, request.app[LIVE], name, resolution)
    except series.BadResolution as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return json_response(data)


def read_errors(store: Store, name: str, errors: reads.ErrorFilter) -> dict[str, Any]:
    with store.session() as session:
        return {
            "campaign": name,
            **reads.error_urls(session, get_campaign(session, name).id, errors),
        }


async def api_errors(request: web.Request) -> web.Response:
    errors = error_filter(request.query, limit=500)
    return json_response(await _read(request, read_errors, request.match_info["name"], errors))


# -- workers ------------------------------------------------------------------------------


def read_workers(live: LiveSource) -> dict[str, Any]:
    redis = live._client()
    try:
        if redis is not None:
            return {
                "live": True,
                "workers": series.workers(redis),
                "queues": series.queue_table(redis, live.settings),
                "failed": series.failed_jobs(redis, live.settings),
            }
    except (RedisError, OSError):
        pass
    return {"live": False, "workers": [], "queues": [], "failed": []}


async def workers_page(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(read_workers, request.app[LIVE])
    return render(request, "workers.html", data)


async def api_workers(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(read_workers, request.app[LIVE]))


def _requeue(settings: Settings, live: LiveSource, job_id: str) -> dict[str, Any]:
    redis = live._client()
    if redis is None:
        raise web.HTTPServiceUnavailable(text="Redis is unreachable: nothing can be requeued")
    try:
        return series.requeue(redis, settings, job_id)
    except KeyError:
        raise web.HTTPNotFound(text=f"no failed job {job_id!r}") from None
    except (RedisError, OSError) as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis is unreachable: {exc}") from exc


@requires("operator")
async def api_requeue(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    if not JOB_ID.fullmatch(job_id):
        raise web.HTTPBadRequest(text="not an rq job id")
    live = request.app[LIVE]
    done = await asyncio.to_thread(_requeue, live.settings, live, job_id)
    identity = request.get(IDENTITY)
    actor = identity.actor if identity else "open"
    await asyncio.to_thread(audit, request.app[STORE], actor, "job.requeue", **done)
    return json_response(done)


# -- notices ------------------------------------------------------------------------------


def notice_filter(request: web.Request, limit: int | None) -> reads.NoticeFilter:
    """Filters from the query; ``limit`` None: every notice unless the query caps it."""
    q = request.query
    if q.get("limit"):
        limit = _int(q.get("limit"), 0, 1, API_MAX_LIMIT, "limit")

    def text(key: str) -> str | None:
        return (q.get(key) or "").strip()[:500] or None

    return reads.NoticeFilter(
        campaign=text("campaign"),
        status=text("status"),
        channel=text("channel"),
        text=text("q"),
        limit=limit,
        offset=_int(q.get("offset"), 0, 0, None, "offset"),
    )


def read_notices(store: Store, f: reads.NoticeFilter, with_history: bool) -> dict[str, Any]:
    with store.session() as session:
        return reads.notices(session, f, with_history)


async def notices_page(request: web.Request) -> web.Response:
    f = notice_filter(request, reads.PAGE_NOTICES)
    data = await _read(request, read_notices, f, True)
    limit, offset, total = data["limit"], data["offset"], data["total"]
    query = {k: v for k, v in request.query.items() if k != "offset"}
    data["prev"] = _qs({**query, "offset": max(offset - limit, 0)}) if offset > 0 else None
    data["next"] = _qs({**query, "offset": offset + limit}) if offset + limit < total else None
    data["export"] = _qs({k: v for k, v in query.items() if k != "limit"})
    return render(request, "notices.html", data)


def _qs(query: dict[str, Any]) -> str:
    return "?" + urlencode(query) if query else ""


async def api_notices_all(request: web.Request) -> web.Response:
    return json_response(await _read(request, read_notices, notice_filter(request, None), True))


async def notices_csv(request: web.Request) -> web.Response:
    data = await _read(request, read_notices, notice_filter(request, None), False)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return web.Response(
        body=reads.notices_csv(data["notices"]).encode(),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="arachne-notices-{stamp}.csv"',
        },
    )


# -- lists --------------------------------------------------------------------------------


async def lists_page(request: web.Request) -> web.Response:
    lists = await asyncio.to_thread(reads.lists, request.app[STORE])
    return render(request, "lists.html", {"lists": lists})
