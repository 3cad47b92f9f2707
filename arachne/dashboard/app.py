"""The dashboard app: one factory for `arachne dashboard` and the tests (after aiohttp-demos/polls).

``create_app`` wires templates, error pages, routes and one ``cleanup_ctx`` that owns the
store and the Redis connection for the app's lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from arachne import __version__
from arachne.clock import human_duration
from arachne.dashboard import admin, api, inputs, login, match_api, metrics, pages, security, views
from arachne.errors import ConfigError
from arachne.settings import Settings
from arachne.store.db import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[views.SETTINGS] = settings
    setup_templates(app)
    setup_middlewares(app, settings)
    setup_routes(app)
    app.cleanup_ctx.append(resources_ctx)
    return app


def run_dashboard(settings: Settings) -> None:
    """Serve the dashboard until interrupted (the `arachne dashboard` command)."""
    web.run_app(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        ssl_context=tls_context(settings),
        print=lambda _: log.info(
            "dashboard on http://%s:%s/", settings.dashboard_host, settings.dashboard_port
        ),
    )


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS when a certificate is configured (then session cookies are Secure)."""
    if not settings.dashboard_tls_cert:
        return None
    if not settings.dashboard_tls_key:
        raise ConfigError("dashboard_tls_cert needs dashboard_tls_key (the certificate's key)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.dashboard_tls_cert, settings.dashboard_tls_key)
    return context


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", views.index, name="index")
    app.router.add_get("/campaigns/{name}", views.campaign, name="campaign")
    app.router.add_get("/api/campaigns", views.api_campaigns, name="api_campaigns")
    app.router.add_get("/api/campaigns/{name}/stats", views.api_stats, name="api_stats")
    app.router.add_get("/api/campaigns/{name}/matches", views.api_matches, name="api_matches")
    app.router.add_get("/api/campaigns/{name}/notices", views.api_notices, name="api_notices")
    app.router.add_get("/api/campaigns/{name}/removal", views.api_removal, name="api_removal")
    # Each module registers its own routes (one file per part of the console).
    for module in (login, api, match_api, metrics, pages, admin):
        module.setup(app)


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
    app[views.TEMPLATES] = env


def setup_middlewares(app: web.Application, settings: Settings) -> None:
    # Outermost first: headers go on every answer, errors included; then who is asking.
    app.middlewares.append(security.security_headers)
    app.middlewares.append(error_pages)
    app.middlewares.append(inputs.clean_paths)
    security.setup_security(app, settings)


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
        response = _error(request, exc.status, exc.reason, message or exc.reason)
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except Exception as exc:
        refused = inputs.as_client_error(exc)
        if refused is not None:  # bad input that got past the checks: still the client's
            return _error(request, refused.status, refused.reason, refused.text or "")
        log.exception("dashboard error on %s", request.path)
        return _error(
            request, 500, "Internal Server Error", "internal error (see the dashboard log)"
        )


def _error(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    if request.path.startswith(("/api/", "/status/", "/metrics")):
        return views.json_response({"error": reason, "detail": message}, status=status)
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
