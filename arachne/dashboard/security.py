"""Who may see and do what in the console: sessions, API tokens, roles, CSRF, headers, audit.

Nothing is readable without an identity. A person logs in once (login.py) and carries an
encrypted session cookie; a program sends ``Authorization: Bearer arachne_...``. Handlers say
the least role they need with ``@requires(role)`` (unmarked: viewer) or are ``@public``
(health checks). The checks live in one middleware, so a new route cannot forget them.

CSRF: a browser sends the session cookie with any request, so every state-changing request
made with a session must also carry the session's CSRF token (form field or header).
Token requests carry no ambient credential and need none. Every state-changing request
that succeeds is written to the audit log here, whatever its handler records itself.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp_session import Session, get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from sqlalchemy import select

from arachne.dashboard.inputs import parse_form
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import AuditLog, User, utcnow
from arachne.store.users import allows, check_token, has_users

log = logging.getLogger(__name__)

IDENTITY = web.RequestKey("arachne.identity", "Identity")
CSRF = web.RequestKey("arachne.csrf", str)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
COOKIE = "arachne_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Static files the login and setup pages need before anyone has logged in (no data in them).
PUBLIC_STATIC = frozenset({"/static/app.css", "/static/app.js"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    via: str  # "session" | "token" | "open" (metrics served without a token by choice)

    def allows(self, needed: str) -> bool:
        return allows(self.role, needed)

    @property
    def actor(self) -> str:
        """How the audit log names it: web:<login>, token:<name> or open."""
        return {"session": f"web:{self.name}", "token": f"token:{self.name}"}.get(self.via, "open")


def requires(role: str) -> Callable[[H], H]:
    """Mark a handler with the least role it needs (viewer < operator < admin)."""

    def mark(handler: H) -> H:
        handler.arachne_role = role  # type: ignore[attr-defined]
        return handler

    return mark


def public(handler: H) -> H:
    """Mark a handler that answers without any identity (liveness and readiness only)."""
    handler.arachne_role = None  # type: ignore[attr-defined]
    return handler


def needed_role(request: web.Request, settings: Settings) -> str | None:
    """The route's least role; None when it is open to anyone."""
    if request.path in PUBLIC_STATIC:
        return None
    if request.path == "/metrics" and settings.dashboard_metrics_open:
        return None
    route = request.match_info.route
    handler = getattr(route, "handler", None)
    return getattr(handler, "arachne_role", "viewer")


# -- session storage -------------------------------------------------------------------


class _Cookies(EncryptedCookieStorage):
    """Encrypted cookie that is Secure whenever the request came over TLS."""

    async def load_session(self, request: web.Request) -> Session:
        try:
            return await super().load_session(request)
        except (UnicodeError, ValueError):  # not even text: no session, as for a forged one
            return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        self._cookie_params["secure"] = request.secure
        await super().save_session(request, response, session)


def session_key(settings: Settings) -> str:
    """The cookie key: the setting, else one kept in the data dir (sessions survive restarts)."""
    if settings.dashboard_secret_key:
        key = settings.dashboard_secret_key
        if len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) != 32:
            raise ValueError("dashboard_secret_key must be 32 url-safe base64-encoded bytes")
        return key
    path = Path(settings.data_dir) / "dashboard.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(base64.urlsafe_b64encode(secrets.token_bytes(32)))
    return path.read_text().strip()  # the base64 text, as Fernet takes it


def setup_security(app: web.Application, settings: Settings) -> None:
    storage = _Cookies(
        session_key(settings),
        cookie_name=COOKIE,
        httponly=True,
        samesite="Strict",
        max_age=int(settings.dashboard_session_hours * 3600),
    )
    app[TOKENS] = TokenCache()
    app.middlewares.append(session_middleware(storage))
    app.middlewares.append(authenticate)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect (errors are answers by now): headers too
        _harden(request, exc.headers)
        raise
    _harden(request, response.headers)
    return response


def _harden(request: web.Request, headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


# -- the check -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Lookup:
    identity: Identity | None
    users_exist: bool


def _lookup(store: Store, login: str | None) -> _Lookup:
    """One thread hop per page: is anyone set up, and who is this (None: nobody)."""
    with store.session() as session:
        users_exist = has_users(session)
        if login is None:
            return _Lookup(None, users_exist)
        # The role is read afresh: a removed or demoted user loses access at once.
        role = session.scalar(select(User.role).where(User.name == login))
        return _Lookup(Identity(login, role, "session") if role else None, users_exist)


def _token_identity(store: Store, secret: str) -> tuple[Identity, float | None] | None:
    """The token's identity and its seconds to expiry (None: never)."""
    with store.session() as session:
        token = check_token(session, secret)
        if token is None:
            return None
        left = (token.expires_at - utcnow()).total_seconds() if token.expires_at else None
        return Identity(token.name, token.role, "token"), left


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized(request, "the Authorization header must be 'Bearer <token>'")
    if not value.isascii():  # ours are; and a non-UTF-8 header would not encode for the digest
        raise _unauthorized(request, "unknown, expired or revoked token")
    return value.strip()


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/metrics", "/status/"))


def _unauthorized(request: web.Request, detail: str) -> web.HTTPException:
    if _wants_json(request):
        return web.HTTPUnauthorized(text=detail, headers={"WWW-Authenticate": "Bearer"})
    # A person: to the login form, back here afterwards.
    return web.HTTPFound(f"/login?next={request.path_qs}" if request.path != "/" else "/login")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    # views (the data side) imports this module for its decorators, so its keys come late.
    from arachne.dashboard.views import SETTINGS, STORE

    settings, store = request.app[SETTINGS], request.app[STORE]
    needed = needed_role(request, settings)
    if needed is None and request.path != "/login":
        return await handler(request)  # health checks and the login page's own files
    bearer = _bearer(request) if needed is not None else None
    if bearer is not None:
        # A program: no session, no cookie, no CSRF (it carries no ambient credential).
        identity = await request.app[TOKENS].identity(store, bearer)
        if identity is None:
            raise _unauthorized(request, "unknown, expired or revoked token")
        return await _serve(request, handler, store, identity, needed)
    session = await get_session(request)
    request[CSRF] = csrf_token(session)
    login = session.get("user") if needed is not None else None
    found = await asyncio.to_thread(_lookup, store, login)
    if not found.users_exist:
        return await _setup_needed(request)
    if needed is None:  # the login form
        return await handler(request)
    if found.identity is None:
        if login is not None:
            session.invalidate()  # the user was removed
        raise _unauthorized(request, "log in or send 'Authorization: Bearer <token>'")
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session)
    return await _serve(request, handler, store, found.identity, needed)


async def _serve(
    request: web.Request, handler: Handler, store: Store, identity: Identity, needed: str
) -> web.StreamResponse:
    if not identity.allows(needed):
        raise web.HTTPForbidden(
            text=f"this needs the {needed} role; {identity.name} is {identity.role}"
        )
    request[IDENTITY] = identity
    try:
        response = await handler(request)
    except web.HTTPRedirection as done:  # logout, a form's "back to the page"
        await _audit_request(request, store, identity, done.status)
        raise
    await _audit_request(request, store, identity, response.status)
    return response


async def _audit_request(request: web.Request, store: Store, who: Identity, status: int) -> None:
    if request.method not in SAFE_METHODS and status < 400 and _audited(request):
        action = f"http {request.method} {request.path}"
        await asyncio.to_thread(audit, store, who.actor, action, status=status)


def reads_only(handler: H) -> H:
    """Mark a POST that changes nothing (the match API): not written to the audit log."""
    handler.arachne_audit = False  # type: ignore[attr-defined]
    return handler


def _audited(request: web.Request) -> bool:
    handler = getattr(request.match_info.route, "handler", None)
    return getattr(handler, "arachne_audit", True)


class TokenCache:
    """Token -> identity for a few seconds: a platform's match calls need not each cost a
    store round trip. Expiry is exact (an entry never outlives its token); a revocation
    made in another process (the CLI) takes effect within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._known: dict[str, tuple[Identity, float]] = {}

    async def identity(self, store: Store, secret: str) -> Identity | None:
        now = time.monotonic()
        known = self._known.get(secret)
        if known is not None and known[1] > now:
            return known[0]
        found = await asyncio.to_thread(_token_identity, store, secret)
        if found is None:
            self._known.pop(secret, None)
            return None
        identity, left = found
        if len(self._known) > 10_000:  # a bound, not an eviction policy
            self._known.clear()
        self._known[secret] = (identity, now + (self.ttl if left is None else min(self.ttl, left)))
        return identity

    def forget(self) -> None:
        """After a revocation in this process: every token is checked afresh."""
        self._known.clear()


TOKENS = web.AppKey("token_cache", TokenCache)


def csrf_token(session: Session) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def _check_csrf(request: web.Request, session: Session) -> None:
    sent = request.headers.get(CSRF_HEADER)
    # A plain HTML form may carry it as a field. Multipart bodies are never parsed here:
    # aiohttp would spool an uploaded file to disk, so uploads send the header.
    if sent is None and request.content_type == "application/x-www-form-urlencoded":
        form = await parse_form(request)  # cached: the handler reads it again for free
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = csrf_token(session).encode()
    if not sent or not secrets.compare_digest(sent.encode("utf-8", "replace"), expected):
        raise web.HTTPForbidden(
            text=f"CSRF token missing or wrong: reload the page and try again (forms send the "
            f"field {CSRF_FIELD}; scripts and uploads the header {CSRF_HEADER})"
        )


async def _setup_needed(request: web.Request) -> web.StreamResponse:
    """No user exists yet: say how to create one, and serve nothing else."""
    detail = "no console user yet: create one with `arachne users add NAME --role admin`"
    if _wants_json(request):
        raise web.HTTPServiceUnavailable(text=detail)
    from arachne.dashboard.views import render  # views imports nothing from here

    return render(request, "setup.html", {"detail": detail}, status=503)


def audit(store: Store, actor: str, action: str, **detail: Any) -> None:
    with store.session() as session:
        session.add(AuditLog(at=utcnow(), actor=actor, action=action, detail=detail))
