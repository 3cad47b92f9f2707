"""The dashboard app: one factory for `arachne dashboard` and the tests (after aiohttp-demos/polls).

``create_app`` wires templates, error pages, routes and one ``cleanup_ctx`` that owns the
store and the Redis connection for the app's lifetime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from arachne import __version__
from arachne.clock import human_duration
from arachne.dashboard import views
from arachne.queue import stats as st
from arachne.settings import Settings
from arachne.store.db import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[views.SETTINGS] = settings
    setup_templates(app)
    setup_middlewares(app)
    setup_routes(app)
    app.cleanup_ctx.append(resources_ctx)
    return app


def run_dashboard(settings: Settings) -> None:
    """Serve the dashboard until interrupted (the `arachne dashboard` command)."""
    web.run_app(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        print=lambda _: log.info(
            "dashboard on http://%s:%s/", settings.dashboard_host, settings.dashboard_port
        ),
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", views.index, name="index")
    app.router.add_get("/campaigns/{name}", views.campaign, name="campaign")
    app.router.add_get("/api/campaigns", views.api_campaigns, name="api_campaigns")
    app.router.add_get("/api/campaigns/{name}/stats", views.api_stats, name="api_stats")
    app.router.add_get("/api/campaigns/{name}/matches", views.api_matches, name="api_matches")
    app.router.add_get("/api/campaigns/{name}/notices", views.api_notices, name="api_notices")
    app.router.add_get("/api/campaigns/{name}/removal", views.api_removal, name="api_removal")
    app.router.add_get("/metrics", views.metrics, name="metrics")


def setup_templates(app: web.Application) -> None:
    env = Environment(
        loader=PackageLoader("arachne.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def url(route: str, /, **parts: str) -> str:
        return str(app.router[route].url_for(**parts))

    env.globals["url"] = url
    env.globals["version"] = __version__
    env.filters["num"] = _num
    env.filters["when"] = _when
    env.filters["duration"] = lambda seconds: human_duration(seconds, missing="–")
    env.globals["throughput_chart"] = throughput_chart
    app[views.TEMPLATES] = env


def setup_middlewares(app: web.Application) -> None:
    app.middlewares.append(error_pages)


@web.middleware
async def error_pages(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """404/500 as a page for people and as ``{"error": ...}`` for the JSON API."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        return _error(request, exc.status, message or exc.reason)
    except Exception:
        log.exception("dashboard error on %s", request.path)
        return _error(request, 500, "internal error (see the dashboard log)")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return views.json_response({"error": message}, status=status)
    return views.render(request, "error.html", {"status": status, "message": message}, status)


async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[views.SETTINGS]
    # Store.open migrates the schema: blocking, so off the loop.
    store = await asyncio.to_thread(Store.open, settings)
    live = views.LiveSource(settings)
    app[views.STORE] = store
    app[views.LIVE] = live
    try:
        yield
    finally:
        live.close()
        store.dispose()


def _num(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _when(value: str | datetime | None) -> str:
    """ISO timestamps (as the reads return them) shown to the minute, in UTC."""
    if not value:
        return "–"
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.utcoffset() is not None:
        parsed = parsed.astimezone(UTC)
    # Naive values come from SQLite, which drops the offset of the UTC times it was given.
    return parsed.strftime("%Y-%m-%d %H:%M UTC")


# -- throughput chart (a template global: campaign.html calls it) ---------------------

#: (stats key, legend label, colour) for each line of the throughput chart.
CHART_SERIES = (
    (st.PAGES_CRAWLED, "pages crawled", "#4e79a7"),
    (st.IMAGES_QUEUED, "images queued", "#f28e2b"),
    (st.IMAGES_FETCHED, "images fetched", "#59a14f"),
    (st.HASHED, "images hashed", "#b07aa1"),
    (st.IMAGES_MATCHED, "images matched", "#e15759"),
)
#: Minutes of history the chart shows (the timeline keeps a week).
CHART_MINUTES = 120
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 240, 52, 12, 10, 24


def throughput_chart(timeline: dict[int, dict[str, int]]) -> dict[str, Any] | None:
    """SVG geometry for per-minute counts; the template only draws it (no JS, no CDN)."""
    if not timeline:
        return None
    last = max(timeline)
    first = max(min(timeline), last - CHART_MINUTES + 1)
    first = min(first, last - 1)  # a line needs two points
    minutes = range(first, last + 1)
    values = {key: [timeline.get(m, {}).get(key, 0) for m in minutes] for key, _, _ in CHART_SERIES}
    top = _nice_ceiling(max(max(v) for v in values.values()))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(i: int) -> float:
        return round(_LEFT + plot_w * i / (len(minutes) - 1), 1)

    def y(v: float) -> float:
        return round(_TOP + plot_h * (1 - v / top), 1)

    lines = [
        {
            "label": label,
            "color": color,
            "total": sum(values[key]),
            "points": " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values[key])),
        }
        for key, label, color in CHART_SERIES
    ]
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "right": _W - _RIGHT,
        "bottom": _H - _BOTTOM,
        "lines": lines,
        "y_ticks": [{"y": y(v), "label": f"{v:,}"} for v in (0, top // 2, top)],
        "x_labels": [
            {"x": x(0), "label": _hhmm(first), "anchor": "start"},
            {"x": x(len(minutes) - 1), "label": _hhmm(last) + " UTC", "anchor": "end"},
        ],
    }


def _nice_ceiling(value: int) -> int:
    """Smallest 1, 2 or 5 x 10^k at or above value (an even axis top)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return max(m * step, 2)
        step *= 10


def _hhmm(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")
