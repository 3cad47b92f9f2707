"""Every route of the console, one table: who may use it, and how each kind of caller who
may not is refused (no credential, a bad, expired or too-weak token, a session without its
CSRF token). Then bad input the store cannot keep, on SQLite and on PostgreSQL (which
refuses NUL in text where SQLite stores it): always a 4xx, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import DataError

from arachne.dashboard import inputs
from arachne.dashboard.app import create_app
from arachne.dashboard.security import TokenCache
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import ApiToken, AuditLog, utcnow
from arachne.store.users import add_user, create_token
from tests.conftest import drop_postgres_database, fresh_postgres_database
from tests.console import bearer, client_for, flushed_redis, form_csrf, log_in

REDIS_URL = "redis://127.0.0.1:6379/12"
PASSWORD = "correct horse battery staple"
PG_DATABASE = "arachne_test_routes"

#: Every route (method, path) and the least role it needs; None: open to anyone. A new
#: route fails test_the_table_is_every_route until it is added here, with its role.
ROLES: dict[tuple[str, str], str | None] = {
    ("GET", "/"): "viewer",
    ("GET", "/campaigns/{name}"): "viewer",
    ("GET", "/workers"): "viewer",
    ("GET", "/notices"): "viewer",
    ("GET", "/notices.csv"): "viewer",
    ("GET", "/lists"): "viewer",
    ("GET", "/static"): "viewer",  # but app.css and app.js, which the login page needs
    ("GET", "/login"): None,
    ("POST", "/login"): None,  # checks its own CSRF token
    ("POST", "/logout"): "viewer",
    ("GET", "/status/live"): None,
    ("GET", "/status/ready"): None,
    ("GET", "/metrics"): "viewer",
    ("GET", "/api/openapi.json"): "viewer",
    ("GET", "/api/overview"): "viewer",
    ("GET", "/api/campaigns"): "viewer",
    ("POST", "/api/campaigns"): "operator",
    ("GET", "/api/campaigns/{name}/stats"): "viewer",
    ("GET", "/api/campaigns/{name}/matches"): "viewer",
    ("GET", "/api/campaigns/{name}/notices"): "viewer",
    ("POST", "/api/campaigns/{name}/notices"): "operator",
    ("GET", "/api/campaigns/{name}/removal"): "viewer",
    ("GET", "/api/campaigns/{name}/series"): "viewer",
    ("GET", "/api/campaigns/{name}/errors"): "viewer",
    ("POST", "/api/campaigns/{name}/run"): "operator",
    ("POST", "/api/campaigns/{name}/pause"): "operator",
    ("POST", "/api/campaigns/{name}/resume"): "operator",
    ("POST", "/api/campaigns/{name}/cancel"): "operator",
    ("POST", "/api/campaigns/{name}/urls"): "operator",
    ("GET", "/api/workers"): "viewer",
    ("POST", "/api/jobs/{id}/requeue"): "operator",
    ("GET", "/api/notices"): "viewer",
    ("GET", "/api/lists"): "viewer",
    ("POST", "/api/lists/{name}/import"): "operator",
    ("POST", "/api/lists/{name}/retract"): "operator",
    ("POST", "/api/match"): "viewer",
    ("GET", "/access"): "admin",
    ("POST", "/access/users"): "admin",
    ("POST", "/access/users/{name}/remove"): "admin",
    ("POST", "/access/tokens"): "admin",
    ("POST", "/access/tokens/{id}/revoke"): "admin",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("DELETE", "/api/users/{name}"): "admin",
    ("GET", "/api/tokens"): "admin",
    ("POST", "/api/tokens"): "admin",
    ("POST", "/api/tokens/{id}/revoke"): "admin",
}
BELOW = {"operator": "viewer", "admin": "operator"}


def url_of(path: str) -> str:
    if path == "/static":
        return "/static/vendor/uplot/uPlot.min.css"
    return path.format(name="no-such-thing", id="999999")


def is_api(path: str) -> bool:
    return path.startswith(("/api/", "/status/", "/metrics"))


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    for _ in flushed_redis(REDIS_URL):
        yield _settings(tmp_path, None)


def _settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path, redis_url=REDIS_URL, database_url=database_url,
                    queue_name="arachne-test-routes")  # fmt: skip


def seed(settings: Settings) -> dict[str, str]:
    """A user and a token of each role, and an expired admin token: name -> token."""
    store = Store.open(settings)
    tokens = {}
    try:
        with store.session() as session:
            for role in ("viewer", "operator", "admin"):
                add_user(session, role, role, PASSWORD, actor="test")
                tokens[role] = create_token(session, f"{role}-token", role, actor="test")[1]
            old, tokens["expired"] = create_token(
                session, "old", "admin", actor="test", expires_days=1
            )
            old.expires_at = utcnow() - timedelta(minutes=1)
    finally:
        store.dispose()
    return tokens


def test_the_table_is_every_route(sqlite_settings: Settings) -> None:
    served = {}
    for route in create_app(sqlite_settings).router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        role = getattr(route.handler, "arachne_role", "viewer")
        served[(route.method, route.resource.canonical)] = role
    assert served == ROLES


@pytest.mark.asyncio
async def test_every_route_refuses_every_caller_who_may_not_use_it(
    sqlite_settings: Settings,
) -> None:
    tokens = seed(sqlite_settings)
    refused: list[str] = []

    def expect(what: str, got: int, *wanted: int) -> None:
        if got not in wanted:
            refused.append(f"{what}: {got}, expected {' or '.join(map(str, wanted))}")

    async with client_for(sqlite_settings) as client:
        for (method, path), role in ROLES.items():
            url, api = url_of(path), is_api(path)
            if role is None:
                continue
            # A person gets the login form; a program a JSON 401 that says why.
            nobody = 401 if api else 302
            for label, headers in (
                ("no credential", {}),
                ("bad token", bearer("arachne_not-a-token")),
                ("expired token", bearer(tokens["expired"])),
                ("not a bearer", {"Authorization": "Basic dXNlcjpwYXNz"}),
            ):
                resp = await client.request(method, url, headers=headers, allow_redirects=False)
                expect(f"{label} {method} {path}", resp.status, nobody)
                if resp.status == 401:
                    body = await resp.json()
                    expect(f"{label} {method} {path} body", set(body) == {"error", "detail"}, 1)
                    expect(f"{label} {method} {path} header", "Bearer" in resp.headers.get(
                        "WWW-Authenticate", ""), 1)  # fmt: skip
            if role in BELOW:
                resp = await client.request(
                    method, url, headers=bearer(tokens[BELOW[role]]), allow_redirects=False
                )
                expect(f"{BELOW[role]} token on {method} {path}", resp.status, 403)
    # A session must send its CSRF token with every state-changing request, whatever the role.
    async with client_for(sqlite_settings) as client:
        csrf = await log_in(client, "admin", PASSWORD)
        for (method, path), role in ROLES.items():
            if method == "GET" or role is None:
                continue
            resp = await client.request(method, url_of(path), allow_redirects=False)
            expect(f"no CSRF {method} {path}", resp.status, 403)
            wrong = {"X-CSRF-Token": csrf[::-1]}
            resp = await client.request(method, url_of(path), headers=wrong, allow_redirects=False)
            expect(f"wrong CSRF {method} {path}", resp.status, 403)
        # ... and with it, the same requests get past the checks (to the handler's own 4xx).
        for (method, path), role in ROLES.items():
            if method == "GET" or role is None or path == "/logout":
                continue
            headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
            resp = await client.request(
                method, url_of(path), headers=headers, data=b"{}", allow_redirects=False
            )
            expect(f"with CSRF {method} {path}", resp.status not in (401, 403), 1)
    assert refused == []


# -- bad input, on both stores ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    url = fresh_postgres_database(PG_DATABASE) if request.param == "postgresql" else None
    for _ in flushed_redis(REDIS_URL):
        yield _settings(tmp_path, url)
    if url:
        drop_postgres_database(PG_DATABASE)


async def raw_status(client: TestClient, request: bytes) -> int:
    """Send bytes aiohttp's client would not (non-UTF-8 headers); the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return int(line.split()[1])


@pytest.mark.asyncio
async def test_text_the_store_cannot_keep_is_a_400_never_a_500(any_store: Settings) -> None:
    tokens = seed(any_store)
    op, admin, viewer = (
        bearer(tokens["operator"]),
        bearer(tokens["admin"]),
        bearer(tokens["viewer"]),
    )
    nul, surrogate = '"a\\u0000b"', '"\\ud800"'
    deep = b"[" * 50 + b"]" * 50
    cases: list[tuple[str, str, dict[str, str], bytes | None]] = [
        # NUL in a path or a query (PostgreSQL: "cannot contain NUL (0x00) bytes")
        ("GET", "/api/campaigns/a%00b/stats", viewer, None),
        ("GET", "/api/campaigns/a%00b/errors", viewer, None),
        ("GET", "/campaigns/a%00b", viewer, None),
        ("GET", "/api/notices?campaign=a%00b", viewer, None),
        ("GET", "/notices?q=%00", viewer, None),
        ("POST", "/api/campaigns/a%00b/pause", op, b"{}"),
        ("POST", "/api/lists/a%00b/retract", op, b'{"ids": ["1"]}'),
        ("DELETE", "/api/users/a%00b", admin, None),
        # ... in a JSON string, or a lone surrogate (valid JSON, no UTF-8 form)
        (
            "POST",
            "/api/users",
            admin,
            f'{{"name": {nul}, "role": "viewer", "password": "{PASSWORD}"}}'.encode(),
        ),  # fmt: skip
        (
            "POST",
            "/api/users",
            admin,
            f'{{"name": "x", "role": "viewer", "password": {surrogate}}}'.encode(),
        ),  # fmt: skip
        ("POST", "/api/tokens", admin, f'{{"name": {surrogate}, "role": "viewer"}}'.encode()),
        ("POST", "/api/lists/l/retract", op, f'{{"ids": [{nul}]}}'.encode()),
        ("POST", "/api/campaigns", op, f'{{"name": "c", "seeds": [{nul}]}}'.encode()),
        (
            "POST",
            "/api/match",
            viewer,
            f'{{"queries": [{{"hash": {nul}, "hash_kind": "md5"}}]}}'.encode(),
        ),  # fmt: skip
        # JSON nested past reason, and past the parser's own limit
        ("POST", "/api/match", viewer, deep),
        ("POST", "/api/campaigns", op, deep),
        ("POST", "/api/match", viewer, b"[" * 200_000),
        ("POST", "/api/users", admin, b"[" * 200_000),
        # a token id that str.isdigit() takes but int() does not
        ("POST", "/api/tokens/%C2%B2/revoke", admin, None),
        ("POST", "/access/tokens/%C2%B2/revoke", admin, None),
        # forms that do not parse, sent with a token (no CSRF check reads them first)
        (
            "POST",
            "/access/users",
            admin | {"Content-Type": "multipart/form-data; boundary=z"},
            b"--z\r\nnot a part",
        ),  # fmt: skip
        (
            "POST",
            "/access/tokens",
            admin | {"Content-Type": "application/x-www-form-urlencoded"},
            b"name=a%00b&role=viewer",
        ),  # fmt: skip
    ]
    got = []
    async with client_for(any_store) as client:
        for method, url, headers, body in cases:
            headers = {"Content-Type": "application/json"} | headers if body else headers
            resp = await client.request(method, url, headers=headers, data=body)
            text = await resp.text()
            got.append((method, url[:50], resp.status))
            assert 400 <= resp.status < 500, (method, url, resp.status, text[:200])
        # Login: NUL in the name, and a body that does not parse.
        csrf = form_csrf(await (await client.get("/login")).text())
        form = {"csrf_token": csrf, "name": "ad\x00min", "password": PASSWORD}
        resp = await client.post("/login", data=form)
        assert resp.status == 400 and "control character" in await resp.text()
        resp = await client.post("/login", data=b"--z\r\n", headers={
            "Content-Type": "multipart/form-data; boundary=z"})  # fmt: skip
        assert resp.status == 400
        # Bytes that are not UTF-8 in the Authorization header and in the session cookie.
        head = b"GET /api/campaigns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        assert await raw_status(client, head + b"Authorization: Bearer \xff\xfe\r\n\r\n") == 401
        assert await raw_status(client, head + b"Cookie: arachne_session=\xff\xfe\r\n\r\n") == 401
        # The store and the app are fine afterwards.
        assert (await client.get("/api/campaigns", headers=viewer)).status == 200
    assert len(got) == len(cases)


@pytest.mark.asyncio
async def test_redirects_are_audited_and_carry_the_security_headers(
    sqlite_settings: Settings,
) -> None:
    seed(sqlite_settings)
    async with client_for(sqlite_settings) as client:
        to_login = await client.get("/workers", allow_redirects=False)
        assert to_login.status == 302
        for header in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
            assert header in to_login.headers, header
        csrf = await log_in(client, "viewer", PASSWORD)
        out = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
        assert out.status == 302 and "Content-Security-Policy" in out.headers
    store = Store.open(sqlite_settings)
    with store.session() as session:
        actions = session.execute(select(AuditLog.actor, AuditLog.action)).all()
    store.dispose()
    assert ("web:viewer", "http POST /logout") in actions


@pytest.mark.asyncio
async def test_a_cached_token_stops_working_when_it_expires(sqlite_settings: Settings) -> None:
    store = Store.open(sqlite_settings)
    with store.session() as session:
        token, secret = create_token(session, "brief", "viewer", actor="test", expires_days=1)
        token_id = token.id
    cache = TokenCache(ttl=3600)  # an hour: only the token's own expiry can end the entry
    assert (await cache.identity(store, secret)) is not None
    with store.session() as session:
        session.execute(update(ApiToken).where(ApiToken.id == token_id)
                        .values(expires_at=utcnow() + timedelta(seconds=0.3)))  # fmt: skip
    cache.forget()
    assert (await cache.identity(store, secret)) is not None  # cached now, for 0.3 s at most
    await asyncio.sleep(0.4)
    assert (await cache.identity(store, secret)) is None
    store.dispose()


def test_the_last_net_turns_store_refusals_into_400s() -> None:
    refused = inputs.as_client_error(DataError("INSERT", {}, Exception("NUL byte")))
    assert refused is not None and refused.status == 400
    assert inputs.as_client_error(RecursionError()).status == 400  # type: ignore[union-attr]
    assert inputs.as_client_error(KeyError("a bug")) is None  # a real fault stays a 500
    assert json.loads(json.dumps(inputs.loads('{"a": ["b\\tc"]}'))) == {"a": ["b\tc"]}
    with pytest.raises(ValueError, match="deeper"):
        inputs.loads("[" * 33 + "]" * 33)
    assert inputs.loads("[" * 32 + "]" * 32) is not None
