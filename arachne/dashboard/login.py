"""Login and logout for people (programs use API tokens), with failed logins rate-limited."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import get_session, new_session

from arachne.dashboard import views
from arachne.dashboard.inputs import read_form
from arachne.dashboard.security import CSRF_FIELD, audit, csrf_token, public
from arachne.store.users import check_password

#: Seconds over which failed logins are counted.
WINDOW = 15 * 60


class LoginThrottle:
    """Failed logins per client address and per name, in a sliding window.

    Both keys count: one address guessing many names, and many addresses guessing one name.
    In memory: a restart forgets, which costs an attacker a restart they cannot cause.
    """

    def __init__(self, limit: int, window: float = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, *keys: str, now: float | None = None) -> int:
        """Seconds until another try is allowed (0: allowed now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            times = self._failures.get(key)
            if not times:
                continue
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                wait = max(wait, times[0] + self.window - now)
        return int(wait) + 1 if wait > 0 else 0

    def attempt(self, *keys: str, now: float | None = None) -> float:
        """Count a try as failed before its password is checked: tries sent at once cannot
        all slip under the limit while the (slow) checks run. Returns what ``succeeded``
        takes back."""
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures[key].append(now)
        return now

    def succeeded(self, attempt: float, address_key: str, name_key: str) -> None:
        """The try was right: the name starts afresh; the address keeps its other failures."""
        self._failures.pop(name_key, None)
        times = self._failures.get(address_key)
        if times is not None and attempt in times:
            times.remove(attempt)


THROTTLE = web.AppKey("login_throttle", LoginThrottle)


def setup(app: web.Application) -> None:
    app[THROTTLE] = LoginThrottle(app[views.SETTINGS].dashboard_login_attempts)
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login, name="login_post")
    app.router.add_post("/logout", logout, name="logout")


def _next(request: web.Request, raw: object) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect."""
    target = raw if isinstance(raw, str) else "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@public
async def login_form(request: web.Request) -> web.Response:
    return views.render(request, "login.html", {"next": _next(request, request.query.get("next"))})


@public
async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    session = await get_session(request)
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or sent != csrf_token(session):
        return _form_again(request, "The form expired: please try again.", 403)
    name, password = form.get("name"), form.get("password")
    target = _next(request, form.get("next"))
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return _form_again(request, "Enter a name and a password.", 400, target)
    throttle = request.app[THROTTLE]
    keys = (f"ip:{request.remote}", f"name:{name}")
    wait = throttle.retry_after(*keys)
    store = request.app[views.STORE]
    if wait:
        response = _form_again(request, f"Too many failed logins: try again in {wait} s.", 429)
        response.headers["Retry-After"] = str(wait)
        return response
    attempt = throttle.attempt(*keys)
    user = await asyncio.to_thread(_check, store, name, password)
    if user is None:
        await asyncio.to_thread(audit, store, f"web:{name}", "login.failed", remote=request.remote)
        return _form_again(request, "Wrong name or password.", 401, target)
    throttle.succeeded(attempt, *keys)
    # A fresh session on login: a cookie planted before it (fixation) is worth nothing.
    session = await new_session(request)
    session["user"] = name
    csrf_token(session)
    await asyncio.to_thread(audit, store, f"web:{name}", "login", remote=request.remote)
    raise web.HTTPFound(target)


def _check(store: object, name: str, password: str) -> str | None:
    with store.session() as session:  # type: ignore[attr-defined]
        user = check_password(session, name, password)
        return user.name if user else None


def _form_again(request: web.Request, error: str, status: int, target: str = "/") -> web.Response:
    return views.render(request, "login.html", {"error": error, "next": target}, status)


async def logout(request: web.Request) -> web.Response:
    # Reached only through the middleware: a logged-in user with the right CSRF token.
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPFound("/login")
