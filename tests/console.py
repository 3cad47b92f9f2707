"""What the console's tests share: a clean Redis db, an app client, a Bearer header, and
logging in through the form."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from aiohttp.test_utils import TestClient, TestServer
from redis import Redis

from arachne.dashboard.app import create_app
from arachne.settings import Settings


def flushed_redis(url: str) -> Iterator[Redis]:
    """For a fixture (``yield from``): the test's own Redis db, empty before and after."""
    client = Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@asynccontextmanager
async def client_for(
    settings: Settings, headers: dict[str, str] | None = None
) -> AsyncIterator[TestClient]:
    """The real app (create_app) served on a loopback port, with a client for it."""
    async with TestClient(TestServer(create_app(settings)), headers=headers) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def form_csrf(html: str) -> str:
    """The CSRF token of a page's form (the login form's hidden field)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def page_csrf(html: str) -> str:
    """The CSRF token a logged-in page carries for its scripts (meta tag)."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def log_in(client: TestClient, name: str, password: str) -> str:
    """Log ``name`` in through the form (must succeed); the session's CSRF token."""
    csrf = form_csrf(await (await client.get("/login")).text())
    form = {"csrf_token": csrf, "name": name, "password": password}
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 302
    return page_csrf(await (await client.get("/")).text())


def closed_port_url() -> str:
    """A Redis URL where nothing listens (Redis down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
