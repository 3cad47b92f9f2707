"""Access management on the console: the admin page's forms and the users/tokens API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import ApiToken, AuditLog, User
from arachne.store.users import add_user, check_password, create_token
from tests.console import bearer, client_for
from tests.console import log_in as console_log_in

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/11", database_url=None,
        queue_name="arachne-test-admin",
    )  # fmt: skip


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    with store.session() as session:
        add_user(session, "root", "admin", PASSWORD, actor="test")
        add_user(session, "olga", "operator", PASSWORD, actor="test")
    yield store
    store.dispose()


async def log_in(client: TestClient, name: str) -> str:
    """Log in through the form; the page's CSRF token afterwards."""
    return await console_log_in(client, name, PASSWORD)


@pytest.mark.asyncio
async def test_admin_page_adds_users_and_shows_a_new_token_once(settings, store) -> None:
    async with client_for(settings) as client:
        csrf = await log_in(client, "root")
        page = await client.get("/access")
        html = await page.text()
        assert page.status == 200 and "olga" in html and 'href="/access"' in html
        added = await client.post(
            "/access/users",
            data={"csrf_token": csrf, "name": "vic", "role": "viewer", "password": PASSWORD},
            allow_redirects=False,
        )
        assert added.status == 303 and added.headers["Location"] == "/access"
        weak = await client.post(
            "/access/users",
            data={"csrf_token": csrf, "name": "w", "role": "viewer", "password": "short"},
        )
        assert weak.status == 400 and "at least 12" in await weak.text()
        created = await client.post(
            "/access/tokens",
            data={"csrf_token": csrf, "name": "shield", "role": "viewer", "expires_days": "30"},
        )
        html = await created.text()
        assert created.status == 201
        secret = re.search(r"<pre class=\"secret\" data-new-token>(arachne_[^<]+)</pre>", html)
        assert secret
        # Shown once: the next look at the page has only its prefix.
        again = await (await client.get("/access")).text()
        assert secret.group(1) not in again and secret.group(1)[:12] in again
        # The token works, then is revoked from the page and stops at once.
        assert (await client.get("/api/campaigns", headers=bearer(secret.group(1)))).status == 200
        with store.session() as session:
            token_id = session.scalar(select(ApiToken.id).where(ApiToken.name == "shield"))
        revoked = await client.post(
            f"/access/tokens/{token_id}/revoke", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert revoked.status == 303
        assert (await client.get("/api/campaigns", headers=bearer(secret.group(1)))).status == 401
        no_csrf = await client.post(f"/access/tokens/{token_id}/revoke")
        assert no_csrf.status == 403
    with store.session() as session:
        assert check_password(session, "vic", PASSWORD) is not None
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert {"user.add", "token.create", "token.revoke"} <= set(actions)


@pytest.mark.asyncio
async def test_only_admins_manage_access(settings, store) -> None:
    with store.session() as session:
        op = create_token(session, "op", "operator", actor="test")[1]
    async with client_for(settings) as client:
        assert (await client.get("/api/users", headers=bearer(op))).status == 403
        assert (await client.post("/api/tokens", headers=bearer(op), json={})).status == 403
        csrf = await log_in(client, "olga")
        assert (await client.get("/access")).status == 403
        home = await (await client.get("/")).text()
        assert 'href="/access"' not in home  # no link to what the role cannot open
        refused = await client.post(
            "/access/users",
            data={"csrf_token": csrf, "name": "x", "role": "admin", "password": PASSWORD},
        )
        assert refused.status == 403
    with store.session() as session:
        assert session.scalar(select(User).where(User.name == "x")) is None


@pytest.mark.asyncio
async def test_users_and_tokens_api(settings, store) -> None:
    with store.session() as session:
        admin = create_token(session, "adm", "admin", actor="test")[1]
    h = bearer(admin)
    async with client_for(settings) as client:
        made = await client.post(
            "/api/tokens", headers=h, json={"name": "plat", "role": "viewer", "expires_days": 7}
        )
        body = await made.json()
        assert made.status == 201 and body["token"].startswith("arachne_")
        assert body["role"] == "viewer" and body["expires_at"]
        listed = (await (await client.get("/api/tokens", headers=h)).json())["tokens"]
        assert {t["name"] for t in listed} == {"adm", "plat"}
        assert all("token" not in t and "token_sha256" not in t for t in listed)
        for bad, status in [
            ({"name": "", "role": "viewer"}, 400),
            ({"name": "a", "role": "god"}, 400),
            ({"name": "a", "expires_days": 0}, 400),
            ({"name": "a", "expires_days": True}, 400),
            ({"name": "a", "extra": 1}, 400),
            ({"name": "x" * 101}, 400),
        ]:
            resp = await client.post("/api/tokens", headers=h, json=bad)
            assert resp.status == status, bad
            assert (await resp.json())["detail"]
        assert (await client.post("/api/tokens/999/revoke", headers=h)).status == 404
        assert (await client.post("/api/tokens/x/revoke", headers=h)).status == 400
        revoke = await client.post(f"/api/tokens/{body['id']}/revoke", headers=h)
        assert revoke.status == 200
        assert (await client.get("/api/campaigns", headers=bearer(body["token"]))).status == 401

        user = {"name": "nia", "role": "operator", "password": PASSWORD}
        assert (await client.post("/api/users", headers=h, json=user)).status == 201
        assert (await client.post("/api/users", headers=h, json=user)).status == 409
        users = (await (await client.get("/api/users", headers=h)).json())["users"]
        assert {u["name"]: u["role"] for u in users} == {
            "nia": "operator", "olga": "operator", "root": "admin",
        }  # fmt: skip
        assert all("password" not in str(u) for u in users)
        assert (await client.delete("/api/users/nia", headers=h)).status == 200
        assert (await client.delete("/api/users/nia", headers=h)).status == 404
        # The last admin stays: nobody could manage access without one.
        last = await client.delete("/api/users/root", headers=h)
        assert last.status == 409 and "last admin" in (await last.json())["detail"]
