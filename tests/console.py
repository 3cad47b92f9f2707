"""What the console's tests share: a clean Redis db, an app client, a Bearer header."""

from __future__ import annotations

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


def closed_port_url() -> str:
    """A Redis URL where nothing listens (Redis down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
