"""Console access control: the real app, a real SQLite store, real users and tokens.

Every way in is tried: no user yet, login (wrong, throttled, right), session cookie flags,
CSRF, logout, Bearer tokens (missing, malformed, unknown, expired, revoked, wrong role),
the /metrics opt-out, security headers and the audit log.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from arachne.dashboard.app import create_app, tls_context
from arachne.dashboard.login import LoginThrottle
from arachne.dashboard.security import CSP, requires, session_key
from arachne.errors import ConfigError
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import ApiToken, AuditLog
from arachne.store.users import add_user, create_token, remove_user, revoke_token
from tests.console import form_csrf, page_csrf

PASSWORD = "correct horse battery"


def make_settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        redis_url="redis://127.0.0.1:6379/11",
        database_url=None,
        queue_name="arachne-test-auth",
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    yield store
    store.dispose()


@pytest.fixture
def users(store: Store) -> dict[str, str]:
    """A user of each role, and a token of each role: name -> token."""
    tokens = {}
    with store.session() as session:
        for role in ("viewer", "operator", "admin"):
            add_user(session, role, role, PASSWORD, actor="test")
            tokens[role] = create_token(session, f"{role}-token", role, actor="test")[1]
    return tokens


def _echo() -> web.Response:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    return handler


def app_for(settings: Settings) -> web.Application:
    app = create_app(settings)
    # A state-changing route per role, to try each check on.
    app.router.add_post("/api/test/viewer", requires("viewer")(_echo()))
    app.router.add_post("/api/test/operator", requires("operator")(_echo()))
    app.router.add_post("/api/test/admin", requires("admin")(_echo()))
    return app


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(app_for(settings))) as client:
        yield client


async def csrf_of(client: TestClient, path: str = "/login") -> str:
    return form_csrf(await (await client.get(path)).text())


async def log_in(client: TestClient, name: str, password: str = PASSWORD, **form: str):
    token = await csrf_of(client)
    data = {"csrf_token": token, "name": name, "password": password, **form}
    return await client.post("/login", data=data, allow_redirects=False)


@pytest.mark.asyncio
async def test_no_user_yet_serves_only_how_to_create_one(settings, store) -> None:
    async with client_for(settings) as client:
        page = await client.get("/")
        html = await page.text()
        assert page.status == 503
        assert "arachne users add NAME --role admin" in html
        # No inline code (the CSP forbids it): scripts by src only, no styles, no handlers.
        assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=", html)
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
        assert len(scripts) == html.count("<script") and not "".join(scripts).strip()
        login = await client.get("/login")
        assert login.status == 503 and "users add" in await login.text()
        api = await client.get("/api/campaigns")
        assert api.status == 503
        assert "arachne users add" in (await api.json())["detail"]


@pytest.mark.asyncio
async def test_pages_redirect_to_login_and_api_needs_a_token(settings, store, users) -> None:
    async with client_for(settings) as client:
        page = await client.get("/campaigns/x", allow_redirects=False)
        assert page.status == 302
        assert page.headers["Location"] == "/login?next=/campaigns/x"
        for path in ("/api/campaigns", "/metrics"):
            resp = await client.get(path)
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            body = await resp.json()
            assert body["error"] == "Unauthorized" and "Bearer" in body["detail"]


@pytest.mark.asyncio
async def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(settings, store, users):
    async with client_for(settings) as client:
        before = await csrf_of(client)
        resp = await log_in(client, "viewer", next="/campaigns/x")
        assert resp.status == 302 and resp.headers["Location"] == "/campaigns/x"
        cookie = resp.headers["Set-Cookie"]
        assert "arachne_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; Secure when served over TLS
        home = await client.get("/", allow_redirects=False)
        assert home.status == 200
        html = await home.text()
        assert "viewer (viewer)" in html
        after = page_csrf(html)
        assert after != before  # a new session at login: no fixation
        assert (await client.get("/api/campaigns")).status == 200  # the session works on the API

        no_csrf = await client.post("/logout", allow_redirects=False)
        assert no_csrf.status == 403
        out = await client.post("/logout", data={"csrf_token": after}, allow_redirects=False)
        assert out.status == 302 and out.headers["Location"] == "/login"
        again = await client.get("/", allow_redirects=False)
        assert again.status == 302


@pytest.mark.asyncio
async def test_wrong_password_and_login_throttle(tmp_path, store, users) -> None:
    settings = make_settings(tmp_path, dashboard_login_attempts=3)
    async with client_for(settings) as client:
        for _ in range(3):
            wrong = await log_in(client, "viewer", "not the password at all")
            assert wrong.status == 401
            assert "Wrong name or password" in await wrong.text()
        # Even the right password is refused while throttled.
        blocked = await log_in(client, "viewer")
        assert blocked.status == 429
        assert int(blocked.headers["Retry-After"]) > 0
        assert (await client.get("/", allow_redirects=False)).status == 302
    with store.session() as session:
        failed = session.scalars(select(AuditLog).where(AuditLog.action == "login.failed")).all()
    assert len(failed) == 3 and failed[0].actor == "web:viewer"


def test_login_throttle_window() -> None:
    throttle = LoginThrottle(limit=2, window=60)
    throttle.attempt("ip:a", "name:x", now=0)
    assert throttle.retry_after("ip:a", "name:x", now=1) == 0
    throttle.attempt("ip:a", "name:x", now=10)
    assert throttle.retry_after("ip:a", "name:y", now=11) == 50  # the address is throttled
    assert throttle.retry_after("ip:b", "name:x", now=11) == 50  # and the name, from anywhere
    assert throttle.retry_after("ip:a", "name:x", now=70.5) == 0  # the window slid past
    throttle.attempt("ip:c", "name:z", now=0)
    right = throttle.attempt("ip:c", "name:z", now=1)
    throttle.succeeded(right, "ip:c", "name:z")
    assert throttle.retry_after("ip:d", "name:z", now=2) == 0  # the name starts afresh
    assert throttle._failures["ip:c"] == deque([0])  # the address keeps its real failure


@pytest.mark.asyncio
async def test_concurrent_wrong_logins_cannot_outrun_the_throttle(tmp_path, store, users) -> None:
    # Each try is counted before its (slow, threaded) argon2 check: 12 tries sent at once
    # get at most `limit` checks; before, all 12 were checked and none refused.
    settings = make_settings(tmp_path, dashboard_login_attempts=3)
    async with client_for(settings) as client:
        page = await (await client.get("/login")).text()
        csrf = form_csrf(page)
        form = {"csrf_token": csrf, "name": "viewer", "password": "a wrong password here"}
        tries = [client.post("/login", data=form, allow_redirects=False) for _ in range(12)]
        statuses = Counter(r.status for r in await asyncio.gather(*tries))
    assert statuses == {401: 3, 429: 9}


@pytest.mark.asyncio
async def test_login_form_csrf_and_open_redirect(settings, store, users) -> None:
    async with client_for(settings) as client:
        forged = await client.post(
            "/login", data={"name": "viewer", "password": PASSWORD}, allow_redirects=False
        )
        assert forged.status == 403
        for target in ("//evil.example/", "https://evil.example/", "javascript:alert(1)"):
            resp = await log_in(client, "viewer", next=target)
            assert resp.status == 302 and resp.headers["Location"] == "/"


@pytest.mark.asyncio
async def test_session_requests_need_csrf_tokens_need_not(settings, store, users) -> None:
    async with client_for(settings) as client:
        await log_in(client, "operator")
        token = await csrf_of(client, "/")
        missing = await client.post("/api/test/operator")
        assert missing.status == 403 and "CSRF" in (await missing.json())["detail"]
        wrong = await client.post("/api/test/operator", headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status == 403
        ok = await client.post("/api/test/operator", headers={"X-CSRF-Token": token})
        assert ok.status == 200
        form = await client.post("/api/test/operator", data={"csrf_token": token})
        assert form.status == 200
        admin_only = await client.post("/api/test/admin", headers={"X-CSRF-Token": token})
        assert admin_only.status == 403
        assert "needs the admin role" in (await admin_only.json())["detail"]
    async with client_for(settings) as client:
        bearer = {"Authorization": f"Bearer {users['operator']}"}
        assert (await client.post("/api/test/operator", headers=bearer)).status == 200


@pytest.mark.asyncio
async def test_every_bearer_failure(settings, store, users) -> None:
    with store.session() as session:
        expired, expired_secret = create_token(session, "old", "admin", actor="t", expires_days=1)
        expired.expires_at = expired.created_at - timedelta(seconds=1)
        revoked, revoked_secret = create_token(session, "gone", "admin", actor="t")
        revoke_token(session, revoked.id, actor="t")
    cases = {
        "Bearer": 401,  # no token after the scheme
        "Basic dmlld2VyOnB3": 401,  # another scheme
        "Bearer arachne_not-a-real-token": 401,
        f"Bearer {expired_secret}": 401,
        f"Bearer {revoked_secret}": 401,
        f"Bearer {users['viewer']}": 403,  # wrong role for the operator route
        f"Bearer {users['operator']}": 200,
        f"bearer {users['admin']}": 200,  # the scheme is case-insensitive
    }
    async with client_for(settings) as client:
        for header, status in cases.items():
            resp = await client.post("/api/test/operator", headers={"Authorization": header})
            assert resp.status == status, header
            if status == 401:
                assert resp.headers["WWW-Authenticate"] == "Bearer"
                assert (await resp.json())["error"] == "Unauthorized"
        # A viewer token reads.
        viewer = {"Authorization": f"Bearer {users['viewer']}"}
        assert (await client.get("/api/campaigns", headers=viewer)).status == 200
    with store.session() as session:
        used = session.scalar(select(ApiToken).where(ApiToken.name == "operator-token"))
        assert used.last_used_at is not None


@pytest.mark.asyncio
async def test_removed_user_loses_their_session(settings, store, users) -> None:
    async with client_for(settings) as client:
        await log_in(client, "viewer")
        assert (await client.get("/", allow_redirects=False)).status == 200
        with store.session() as session:
            remove_user(session, "viewer", actor="test")
        assert (await client.get("/", allow_redirects=False)).status == 302


@pytest.mark.asyncio
async def test_metrics_needs_a_token_unless_opened(tmp_path, store, users) -> None:
    async with client_for(make_settings(tmp_path)) as client:
        assert (await client.get("/metrics")).status == 401
        bearer = {"Authorization": f"Bearer {users['viewer']}"}
        assert (await client.get("/metrics", headers=bearer)).status == 200
    async with client_for(make_settings(tmp_path, dashboard_metrics_open=True)) as client:
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/api/campaigns")).status == 401  # only /metrics opens


@pytest.mark.asyncio
async def test_security_headers_on_every_answer(settings, store, users) -> None:
    async with client_for(settings) as client:
        bearer = {"Authorization": f"Bearer {users['viewer']}"}
        answers = [
            await client.get("/login"),
            await client.get("/", headers=bearer),
            await client.get("/api/campaigns"),  # 401
            await client.get("/api/nothing-here", headers=bearer),  # 404
        ]
        for resp in answers:
            assert resp.headers["Content-Security-Policy"] == CSP
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
    assert "script-src 'self'" in CSP and "style-src 'self'" in CSP


@pytest.mark.asyncio
async def test_state_changes_are_audited_with_who(settings, store, users) -> None:
    async with client_for(settings) as client:
        bearer = {"Authorization": f"Bearer {users['admin']}"}
        assert (await client.post("/api/test/admin", headers=bearer)).status == 200
        assert (await client.post("/api/test/admin")).status == 401  # refused: not audited
        await log_in(client, "operator")
    with store.session() as session:
        rows = [
            (a.actor, a.action) for a in session.scalars(select(AuditLog).order_by(AuditLog.id))
        ]
    assert ("token:admin-token", "http POST /api/test/admin") in rows
    assert ("web:operator", "login") in rows
    assert sum(action == "http POST /api/test/admin" for _, action in rows) == 1


def test_session_key_is_kept_private_and_reused(tmp_path) -> None:
    settings = make_settings(tmp_path)
    first = session_key(settings)
    assert session_key(settings) == first
    assert (tmp_path / "dashboard.key").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError):
        session_key(make_settings(tmp_path, dashboard_secret_key="too-short"))


@pytest.mark.asyncio
async def test_match_lookups_are_not_audited(settings, store, users) -> None:
    async with client_for(settings) as client:
        query = {"queries": [{"hash": "0" * 32, "hash_kind": "md5"}]}
        bearer = {"Authorization": f"Bearer {users['viewer']}"}
        resp = await client.post("/api/match", json=query, headers=bearer)
        assert resp.status == 200 and (await resp.json())["results"][0]["result"] == "no-match"
        assert "Set-Cookie" not in resp.headers  # a program gets no session
    with store.session() as session:
        actions = [a.action for a in session.scalars(select(AuditLog))]
    assert not [a for a in actions if "/api/match" in a]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (cryptography comes with aiohttp-session)."""
    from datetime import UTC, datetime
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.asyncio
async def test_over_tls_the_cookie_is_secure_and_hsts_is_sent(tmp_path, store, users) -> None:
    cert, key = self_signed(tmp_path)
    settings = make_settings(tmp_path, dashboard_tls_cert=cert, dashboard_tls_key=key)
    server = TestServer(app_for(settings))
    await server.start_server(ssl=tls_context(settings))
    async with TestClient(server) as client:
        assert str(client.make_url("/")).startswith("https://")
        form = await client.get("/login", ssl=False)
        assert form.headers["Strict-Transport-Security"].startswith("max-age=")
        csrf = form_csrf(await form.text())
        data = {"csrf_token": csrf, "name": "viewer", "password": PASSWORD}
        resp = await client.post("/login", data=data, allow_redirects=False, ssl=False)
        assert resp.status == 302
        cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with pytest.raises(ConfigError, match="needs dashboard_tls_key"):
        tls_context(make_settings(tmp_path, dashboard_tls_cert=cert))
