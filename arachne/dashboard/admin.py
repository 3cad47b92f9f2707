"""Access management for admins: console users and API tokens, on a page and in the API.

The same store functions as `arachne users` / `arachne tokens` (store/users.py), so the
rules are one: argon2 passwords of 12+ characters, tokens shown once and kept as SHA-256,
the last admin cannot be removed. The page uses plain HTML forms (CSRF field); a new
token is shown in the answer to its form, once, and never again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from arachne.dashboard.api import choice, only, read_body
from arachne.dashboard.inputs import read_form
from arachne.dashboard.security import IDENTITY, TOKENS, requires
from arachne.dashboard.views import STORE, json_response, render
from arachne.store.db import Store
from arachne.store.users import (
    MAX_TOKEN_DAYS,
    ROLES,
    AccessConflict,
    AccessError,
    UnknownAccess,
    add_user,
    create_token,
    list_tokens,
    list_users,
    remove_user,
    revoke_token,
)

T = TypeVar("T")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/access", access_page, name="access")
    r.add_post("/access/users", page_add_user, name="access_add_user")
    r.add_post("/access/users/{name}/remove", page_remove_user, name="access_remove_user")
    r.add_post("/access/tokens", page_create_token, name="access_create_token")
    r.add_post("/access/tokens/{id}/revoke", page_revoke_token, name="access_revoke_token")
    r.add_get("/api/users", api_users, name="api_users")
    r.add_post("/api/users", api_add_user, name="api_add_user")
    r.add_delete("/api/users/{name}", api_remove_user, name="api_remove_user")
    r.add_get("/api/tokens", api_tokens, name="api_tokens")
    r.add_post("/api/tokens", api_create_token, name="api_create_token")
    r.add_post("/api/tokens/{id}/revoke", api_revoke_token, name="api_revoke_token")


async def _run(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(session, *args, actor=...)`` in a thread; access errors become 4xx."""
    store: Store = request.app[STORE]
    actor = request[IDENTITY].actor

    def work() -> T:
        with store.session() as session:
            return fn(session, *args, actor=actor)

    try:
        return await asyncio.to_thread(work)
    except UnknownAccess as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except AccessConflict as exc:
        raise web.HTTPConflict(text=str(exc)) from exc
    except AccessError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc


def _listing(session: Any, *, actor: str) -> dict[str, Any]:
    return {"users": list_users(session), "tokens": list_tokens(session)}


def _new_token(
    session: Any, name: str, role: str, days: float | None, *, actor: str
) -> dict[str, Any]:
    token, secret = create_token(session, name, role, actor=actor, expires_days=days)
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "token": secret,
    }


def _token_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() is True
        raise web.HTTPBadRequest(text=f"a token id is a number, not {raw[:40]!r}")
    return int(raw)


def _days(raw: Any) -> float | None:
    if raw in (None, ""):
        return None
    try:
        days = float(raw)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text="expires_days must be a number of days") from None
    if isinstance(raw, bool) or not 0 < days <= MAX_TOKEN_DAYS:
        raise web.HTTPBadRequest(text=f"expires_days must be above 0 and at most {MAX_TOKEN_DAYS}")
    return days


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(text=f"{key} is required (a string)")
    return value


# -- the page --------------------------------------------------------------------------


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    listing = await _run(request, _listing)
    return render(request, "access.html", {**listing, "roles": ROLES, **extra}, status)


@requires("admin")
async def access_page(request: web.Request) -> web.Response:
    return await _page(request)


async def _form_action(request: web.Request, action: Callable[[], Any]) -> web.Response:
    """Do it; on a refusal show the page again with the reason, else back to the page."""
    try:
        result = await action()
    except web.HTTPClientError as exc:
        return await _page(request, exc.status, error=exc.text)
    if isinstance(result, web.Response):
        return result
    raise web.HTTPSeeOther(str(request.app.router["access"].url_for()))


@requires("admin")
async def page_add_user(request: web.Request) -> web.Response:
    form = await read_form(request)

    async def act() -> None:
        name, role = _text(form.get("name"), "name"), _text(form.get("role"), "role")
        await _run(request, add_user, name, role, _text(form.get("password"), "password"))

    return await _form_action(request, act)


@requires("admin")
async def page_remove_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return await _form_action(request, lambda: _run(request, remove_user, name))


@requires("admin")
async def page_create_token(request: web.Request) -> web.Response:
    form = await read_form(request)

    async def act() -> web.Response:
        name, role = _text(form.get("name"), "name"), _text(form.get("role"), "role")
        created = await _run(request, _new_token, name, role, _days(form.get("expires_days")))
        # Shown in this answer only: the store keeps its SHA-256, not the token.
        return await _page(request, 201, created=created)

    return await _form_action(request, act)


@requires("admin")
async def page_revoke_token(request: web.Request) -> web.Response:
    async def act() -> None:
        await _run(request, revoke_token, _token_id(request))
        request.app[TOKENS].forget()

    return await _form_action(request, act)


# -- the API -------------------------------------------------------------------------


@requires("admin")
async def api_users(request: web.Request) -> web.Response:
    return json_response({"users": (await _run(request, _listing))["users"]})


@requires("admin")
async def api_add_user(request: web.Request) -> web.Response:
    body = await read_body(request)
    only(body, {"name", "role", "password"})
    name, password = _text(body.get("name"), "name"), _text(body.get("password"), "password")
    role = choice(body, "role", ROLES) or "viewer"
    await _run(request, add_user, name, role, password)
    return json_response({"name": name, "role": role}, status=201)


@requires("admin")
async def api_remove_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _run(request, remove_user, name)
    return json_response({"name": name, "removed": True})


@requires("admin")
async def api_tokens(request: web.Request) -> web.Response:
    return json_response({"tokens": (await _run(request, _listing))["tokens"]})


@requires("admin")
async def api_create_token(request: web.Request) -> web.Response:
    body = await read_body(request)
    only(body, {"name", "role", "expires_days"})
    name = _text(body.get("name"), "name")
    role = choice(body, "role", ROLES) or "viewer"
    created = await _run(request, _new_token, name, role, _days(body.get("expires_days")))
    return json_response(created, status=201)


@requires("admin")
async def api_revoke_token(request: web.Request) -> web.Response:
    token_id = _token_id(request)
    await _run(request, revoke_token, token_id)
    request.app[TOKENS].forget()  # revoked here: at once, not after the cache's seconds
    return json_response({"id": token_id, "revoked": True})
