"""The JSON API (issue 10): campaigns, hash lists and health; the match API is ``match_api.py``.

Routes are registered here; the handlers are in ``api_campaigns.py`` and ``api_lists.py``,
the reads of a campaign in ``views.py``, and every route is described in ``openapi.py``.
Handlers check their input with the helpers below and call the same store and runner
functions as the CLI, in a worker thread. Operator errors become 4xx with the message the
CLI would print (the error middleware makes them ``{error, detail}``); nothing a client
sends may end in a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text

from arachne.crawler.scope import MAX_URL_LENGTH  # longer: the crawler never fetches it
from arachne.dashboard import inputs, openapi
from arachne.dashboard.security import IDENTITY, public
from arachne.dashboard.views import LIVE, STORE, LiveSource, json_response
from arachne.errors import (
    CampaignBusy,
    CampaignExists,
    ListFormatError,
    RunStateError,
    UnknownCampaign,
)
from arachne.store.db import Store
from arachne.store.listversions import ListChangeRefused, UnknownList

T = TypeVar("T")

# Store and runner refusals, as the CLI words them, with the status each one gets.
_STATUS: tuple[tuple[type[Exception], type[web.HTTPException]], ...] = (
    (UnknownCampaign, web.HTTPNotFound),
    (UnknownList, web.HTTPNotFound),
    (CampaignExists, web.HTTPConflict),
    (CampaignBusy, web.HTTPConflict),
    (RunStateError, web.HTTPConflict),
    (ListChangeRefused, web.HTTPConflict),
    (ListFormatError, web.HTTPBadRequest),
)


def setup(app: web.Application) -> None:
    """Register the API's routes (the handler modules import the helpers below)."""
    from arachne.dashboard import api_campaigns, api_lists, api_notices

    api_campaigns.setup(app)
    api_lists.setup(app)
    api_notices.setup(app)
    add = app.router
    add.add_get("/api/openapi.json", openapi_document, name="api_openapi")
    add.add_get("/status/live", status_live, name="status_live")
    add.add_get("/status/ready", status_ready, name="status_ready")


# -- helpers -------------------------------------------------------------------------


async def call(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking ``fn(store, *args)`` in a thread; operator errors become 4xx."""
    try:
        return await asyncio.to_thread(fn, request.app[STORE], *args)
    except tuple(exc for exc, _ in _STATUS) as exc:
        status = next(http for kind, http in _STATUS if isinstance(exc, kind))
        raise status(text=str(exc)) from exc


def actor_of(request: web.Request) -> str:
    identity = request.get(IDENTITY)
    return identity.actor if identity is not None else "api"


async def read_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body where that is allowed)."""
    raw = await request.read()  # bounded by the app's client_max_size (else 413)
    if not raw.strip() and optional:
        return {}
    try:
        data = inputs.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8, too deep, or text the store refuses
        raise web.HTTPBadRequest(text=f"the body must be a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return data


def only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise web.HTTPBadRequest(
            text=f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            + ", ".join(sorted(allowed))
        )


def int_field(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:  # bool is an int: refused too
        raise web.HTTPBadRequest(text=f"{key} must be an integer from {low} to {high}")
    return value


def choice(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = body.get(key)
    if value is not None and value not in choices:
        raise web.HTTPBadRequest(text=f"{key} must be one of {', '.join(choices)}")
    return value


def strings(
    body: dict[str, Any], key: str, *, most: int, longest: int, least: int = 0
) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise web.HTTPBadRequest(text=f"{key} must be a list of strings")
    if not least <= len(value) <= most:
        raise web.HTTPBadRequest(text=f"{key} takes {least} to {most} items, not {len(value)}")
    for v in value:
        if not v.strip() or len(v) > longest:
            raise web.HTTPBadRequest(text=f"each of {key} is 1 to {longest} characters")
    return value


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be crawled or fetched; None when it can."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds whitespace or control characters"
    if not url.startswith(("http://", "https://")):  # as `arachne campaign create`
        return "is not an http(s) URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "is not a valid URL"
    return None if parts.hostname else "has no host"


def url_list(values: list[str], key: str) -> list[str]:
    for url in values:
        problem = check_url(url)
        if problem:
            raise web.HTTPBadRequest(text=f"{key}: {url[:200]!r} {problem}")
    return list(dict.fromkeys(values))


async def redis_of(request: web.Request, *, required: bool = True) -> Redis | None:
    """The live Redis, answering (finding it may block: in a thread); without one, a 503
    when ``required``, else None."""
    live = request.app[LIVE]

    def find() -> Redis | None:
        redis = live._client()
        if redis is not None:
            redis.ping()
        return redis

    try:
        redis = await asyncio.to_thread(find)
    except (RedisError, OSError):
        redis = None
    if redis is None and required:
        raise web.HTTPServiceUnavailable(
            text="Redis is not reachable, so the campaign's processes cannot be told; try "
            "again when it is"
        )
    return redis


# -- health and the document ---------------------------------------------------------


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(openapi.document())


@public
async def status_live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@public
async def status_ready(request: web.Request) -> web.Response:
    """200 when Redis and the store answer, else 503 saying which did not."""
    checks = dict(
        zip(
            ("store", "redis"),
            await asyncio.gather(
                _check(asyncio.to_thread(_store_ok, request.app[STORE])),
                _check(asyncio.to_thread(_redis_ok, request.app[LIVE])),
            ),
            strict=True,
        )
    )
    ok = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, timeout=5)
    except TimeoutError:
        return "no answer within 5 s"
    except Exception as exc:  # only the kind: a public endpoint names no host or DSN
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def _store_ok(store: Store) -> None:
    with store.session() as session:
        session.execute(text("SELECT 1"))


def _redis_ok(live: LiveSource) -> None:
    redis = live._client()
    if redis is None:
        raise ConnectionError("no Redis configured or running")
    redis.ping()
