"""A tiny local image server for queue/matcher tests (loopback, in memory)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image


def make_image(seed: int, size: tuple[int, int] = (160, 120), fmt: str = "JPEG") -> bytes:
    """A benign generated picture: smooth random blobs, so PDQ quality is high."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def serve(routes: dict[str, tuple[int, str, bytes]], host: str = "127.0.0.1") -> Any:
    """Serve ``path -> (status, content type, body)``; yields the base URL."""
    return serve_slow(routes, host=host, delay=0.0)


@contextmanager
def serve_slow(
    routes: dict[str, tuple[int, str, bytes]],
    host: str = "127.0.0.1",
    delay: float = 0.0,
    failures: dict[str, int] | None = None,
    headers: dict[str, dict[str, str]] | None = None,
) -> Iterator[str]:
    """Like ``serve``, answering each request after ``delay`` seconds; a path in
    ``failures`` answers 503 that many times before it works; ``headers``: extra response
    headers per path."""
    failing = dict(failures or {})

    async def handler(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        if failing.get(request.path, 0) > 0:
            failing[request.path] -= 1
            return web.Response(status=503, text="try later")
        status, ctype, body = routes.get(request.path, (404, "text/plain", b"not found"))
        extra = (headers or {}).get(request.path, {})
        return web.Response(status=status, body=body, content_type=ctype, headers=extra)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        return f"http://{host}:{runner.addresses[0][1]}"

    base = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield base
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextmanager
def serve_handler(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], name: str = "test-site"
) -> Iterator[str]:
    """Serve every path with ``handler`` on 127.0.0.1 (its own thread); yields the base URL."""
    from arachne.demo.background import ServerThread

    runner: list[web.AppRunner] = []

    async def start() -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner.append(web.AppRunner(app, access_log=None))
        await runner[0].setup()
        await web.TCPSite(runner[0], "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner[0].addresses[0][1]}"

    async def stop() -> None:
        await runner[0].cleanup()

    with ServerThread(start, stop, name) as base:
        yield base
