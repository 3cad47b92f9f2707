"""Dashboard views: thin handlers over the store (system of record) and live Redis counters.

Store and Redis reads block, so each request gathers everything it needs in one function run
in a worker thread and renders on the event loop. Image URLs are shown as text, never as
links or images: the dashboard must not become a way to view the material it tracks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import groupby
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arachne.dashboard import reads, series
from arachne.dashboard.security import CSRF, IDENTITY
from arachne.errors import ConfigError, UnknownCampaign
from arachne.notices.listing import notice_list
from arachne.notices.stats import removal_stats
from arachne.queue.connection import image_queues, redis_from_settings
from arachne.queue.stats import Stats, errors_by_reason, run_reader
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import Campaign, HashEntry, HashList, Match, Sighting
from arachne.store.summary import LiveRun, campaign_summary, get_campaign

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Rows of matched URLs shown on the campaign page; the JSON API pages through the rest.
PAGE_MATCHES = 500
#: Largest ``limit`` the JSON API accepts in one request.
API_MAX_LIMIT = 10_000
MAX_OFFSET = 2**62


@dataclass(frozen=True)
class LiveFigures:
    """One read of Redis for a request: queue depth and raw counters (the charts' timeline
    is read by series.py, on its own endpoint)."""

    queue_depth: int
    counters: dict[str, dict[str, int]]


class LiveSource:
    """Redis for live counters; every read returns None while Redis is unreachable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: Redis | None = None
        if settings.redis_url:
            # Short timeouts: a dead Redis should cost a page a moment, not hang it.
            self._redis = Redis.from_url(
                settings.redis_url, socket_connect_timeout=2, socket_timeout=5
            )

    def _client(self) -> Redis | None:
        if self._redis is None:
            try:
                # Embedded Valkey: it may start (or restart on a new port) after the
                # dashboard, so look for it again until one is found.
                self._redis = redis_from_settings(self.settings)
            except ConfigError:
                return None
        return self._redis

    def figures(self, campaigns: list[str]) -> LiveFigures | None:
        redis = self._client()
        if redis is None:
            return None
        try:
            return LiveFigures(
                queue_depth=sum(q.count for q in image_queues(redis, self.settings)),
                counters={name: Stats(redis, name).get_all() for name in campaigns},
            )
        except (RedisError, OSError) as exc:
            log.warning("live counters unavailable: %s", exc)
            if not self.settings.redis_url:
                self.close()
            return None

    def board(self, campaigns: list[str]) -> dict[str, Any] | None:
        """Queues per priority, rq workers and batches, each campaign's rates (None: down)."""
        redis = self._client()
        if redis is None:
            return None
        try:
            return {
                "queues": series.queue_depths(redis, self.settings),
                "rq": asdict(series.rq_summary(redis, self.settings)),
                "rates": series.rates(redis, campaigns),
            }
        except (RedisError, OSError) as exc:
            log.warning("live queue figures unavailable: %s", exc)
            return None

    def run_reader(self, name: str) -> LiveRun:
        """``number -> that run's live counters`` (None: the run's stored snapshot is shown)."""
        return run_reader(self._client(), name)

    def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            redis.close()


STORE = web.AppKey("store", Store)
LIVE = web.AppKey("live", LiveSource)
TEMPLATES = web.AppKey("templates", Environment)
SETTINGS = web.AppKey("settings", Settings)


# -- reads (blocking; run in a thread) -------------------------------------------------


def read_overview(store: Store, live: LiveSource) -> dict[str, Any]:
    """Every campaign with its figures, plus what the overview shows of the whole system."""
    with store.session() as session:
        stored = session.execute(
            select(Campaign.name, Campaign.stats).order_by(Campaign.created_at.desc())
        ).all()
        names = [name for name, _ in stored]
        figures = live.figures(names)
        board = live.board(names) if figures else None
        rows, errors = [], Counter[str]()
        for name, snapshot in stored:
            counters = figures.counters.get(name) if figures else None
            row = campaign_summary(session, name, counters)
            row["rates"] = board["rates"].get(name) if board else None
            rows.append(row)
            # An empty live hash means the snapshot stands in (as in campaign_summary).
            errors.update(errors_by_reason(counters or snapshot or {}))
        today = reads.today(session)
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "live": figures is not None,
        "redis_banner": figures is None and any(r["status"] == "running" for r in rows),
        "queue_depth": figures.queue_depth if figures else None,
        "queues": board["queues"] if board else [],
        "rq": board["rq"] if board else None,
        "errors_by_reason": dict(errors.most_common()),
        "today": today,
        "campaigns": rows,
    }


def read_campaign(
    store: Store, live: LiveSource, name: str, errors: reads.ErrorFilter | None = None
) -> dict[str, Any]:
    """Everything the campaign page shows (``errors``: which error URLs); raises
    UnknownCampaign. Without ``errors`` only the figures (the stats API and its polling)."""
    with store.session() as session:
        campaign = get_campaign(session, name)
        figures = live.figures([name])
        counters = figures.counters.get(name) if figures else None
        summary = campaign_summary(session, name, counters, live.run_reader(name))
        removal = removal_stats(session, live.settings, name)
        page: dict[str, Any] = {}
        if errors is not None:
            matches, total = _matches(session, campaign.id, PAGE_MATCHES, 0)
            page = {
                "matches": matches,
                "matches_total": total,
                "notices": _notices(session, name),
                "top_hosts": reads.top_hosts(session, campaign.id),
                "error_urls": reads.error_urls(session, campaign.id, errors),
            }
    # Same fallback as campaign_summary: an empty live hash means the snapshot stands in.
    counted = counters or dict(campaign.stats or {})
    return {
        "summary": summary,
        "live": figures is not None,
        "redis_banner": figures is None and summary["status"] == "running",
        "queue_depth": figures.queue_depth if figures else None,
        "counters": counters,
        "errors_by_reason": errors_by_reason(counted),
        "removal": removal,
        **page,
    }


def read_matches(store: Store, name: str, limit: int, offset: int) -> dict[str, Any]:
    with store.session() as session:
        campaign = get_campaign(session, name)
        rows, total = _matches(session, campaign.id, limit, offset)
    return {"campaign": name, "total": total, "offset": offset, "matches": rows}


def read_notices(store: Store, name: str) -> dict[str, Any]:
    with store.session() as session:
        get_campaign(session, name)
        return {"campaign": name, "notices": _notices(session, name)}


def read_removal(store: Store, settings: Settings, name: str) -> dict[str, Any]:
    """Time to removal for the campaign: median, p90, % within 24 h, per provider/country."""
    with store.session() as session:
        return removal_stats(session, settings, name)


def _matches(
    session: Session, campaign_id: int, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    # List name and category only: hash values and external ids stay out of the dashboard.
    stmt = (
        select(Match, Sighting, HashList.name, HashEntry.category)
        .join(Sighting, Sighting.id == Match.sighting_id)
        .join(HashEntry, HashEntry.id == Match.entry_id)
        .join(HashList, HashList.id == HashEntry.list_id)
        .where(Match.campaign_id == campaign_id)
        .order_by(Sighting.host, Sighting.image_url, Match.distance, Match.id)
        .limit(limit)
        .offset(offset)
    )
    rows = [
        {
            "host": sighting.host,
            "url": sighting.image_url,
            "page_url": sighting.page_url,
            "kind": match.kind,
            "hash_kind": match.hash_kind,
            "distance": match.distance,
            "variant": match.variant,
            "list": list_name,
            "category": category,
            "matched_at": _iso(match.created_at),
        }
        for match, sighting, list_name, category in session.execute(stmt).all()
    ]
    total = session.scalar(
        select(func.count()).select_from(Match).where(Match.campaign_id == campaign_id)
    )
    return rows, int(total or 0)


def _notices(session: Session, campaign_name: str) -> list[dict[str, Any]]:
    """Newest first, with each notice's state and last error (notices.listing)."""
    return list(reversed(notice_list(session, campaign_name)))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def group_by_host(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows arrive sorted by host; one group per host with its distinct URL count."""
    groups = []
    for host, items in groupby(rows, key=lambda r: r["host"]):
        matches = list(items)
        groups.append({"host": host, "urls": len({m["url"] for m in matches}), "rows": matches})
    return groups


# -- handlers ------------------------------------------------------------------------


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    # Every page gets who is looking and the CSRF token its forms and fetch() calls need.
    extra = {"identity": request.get(IDENTITY), "csrf_token": request.get(CSRF)}
    html = request.app[TEMPLATES].get_template(template).render(**extra, **context)
    return web.Response(text=html, status=status, content_type="text/html")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, default=str))


async def _read(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking read in a thread; an unknown campaign becomes a 404."""
    try:
        return await asyncio.to_thread(fn, request.app[STORE], *args)
    except UnknownCampaign as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc


async def index(request: web.Request) -> web.Response:
    data = await _read(request, read_overview, request.app[LIVE])
    return render(request, "index.html", data)


async def campaign(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    errors = error_filter(request.query, prefix="err_")
    data = await _read(request, read_campaign, request.app[LIVE], name, errors)
    data["hosts"] = group_by_host(data["matches"])
    data["errors_pages"] = _pages(request, data["error_urls"], "err_")
    return render(request, "campaign.html", data)


def _pages(request: web.Request, found: dict[str, Any], prefix: str) -> dict[str, str | None]:
    """Query strings of the previous and next page of a paged table (None at either end)."""
    limit, offset, total = found["limit"], found["offset"], found["total"]

    def at(to: int) -> str:
        query = {k: v for k, v in request.query.items() if k != prefix + "offset"}
        return "?" + urlencode({**query, prefix + "offset": to}) if to else "?" + urlencode(query)

    return {
        "prev": at(max(offset - limit, 0)) if offset > 0 else None,
        "next": at(offset + limit) if offset + limit < total else None,
    }


async def api_campaigns(request: web.Request) -> web.Response:
    return json_response(await _read(request, read_overview, request.app[LIVE]))


async def api_stats(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = await _read(request, read_campaign, request.app[LIVE], name)
    return json_response(
        {
            **data["summary"],
            "queue_depth": data["queue_depth"],
            "live_available": data["live"],
            "redis_banner": data["redis_banner"],
            "removal": data["removal"],
            "live": data["counters"],
            "errors_by_reason": data["errors_by_reason"],
        }
    )


async def api_matches(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 1000, 1, API_MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, None)
    name = request.match_info["name"]
    return json_response(await _read(request, read_matches, name, limit, offset))


async def api_notices(request: web.Request) -> web.Response:
    return json_response(await _read(request, read_notices, request.match_info["name"]))


async def api_removal(request: web.Request) -> web.Response:
    settings = request.app[LIVE].settings
    return json_response(await _read(request, read_removal, settings, request.match_info["name"]))


def _int_param(request: web.Request, key: str, default: int, low: int, high: int | None) -> int:
    return _int(request.query.get(key), default, low, high, key)


def _int(raw: str | None, default: int, low: int, high: int | None, key: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be an integer") from None
    # No query offset passes 2^62: larger ones overflow the databases' 64-bit integers.
    return max(low, min(value, MAX_OFFSET if high is None else high))


def error_filter(query: Any, prefix: str = "", limit: int = reads.PAGE_ERRORS) -> reads.ErrorFilter:
    """An error-URL filter from query parameters (``{prefix}reason``, host, q, limit, offset)."""

    def text(key: str) -> str | None:
        return (query.get(prefix + key) or "").strip()[:500] or None

    return reads.ErrorFilter(
        reason=text("reason"),
        host=text("host"),
        text=text("q"),
        limit=_int(query.get(prefix + "limit"), limit, 1, API_MAX_LIMIT, prefix + "limit"),
        offset=_int(query.get(prefix + "offset"), 0, 0, None, prefix + "offset"),
    )
