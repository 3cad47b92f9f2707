"""A loopback site that does everything a crawler must survive, beside five good pages:
slow and stalling answers, a redirect loop, a 2 GB response (announced and chunked), a gzip
bomb, malformed HTML, broken encodings, an infinite calendar and a page that always says
429. Every good page shows one benign image."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter

from aiohttp import web

from arachne.demo.background import ServerThread
from tests.imageserver import make_image

GOOD = [f"/ok{i}" for i in range(5)]
TRAPS = [
    "/slow",
    "/stall",
    "/loop1",
    "/huge",
    "/huge-chunked",
    "/bomb",
    "/malformed",
    "/badenc",
    "/calendar?month=0",
    "/always429",
]
CHUNK = b"x" * 65536


def _page(body: str) -> web.Response:
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


class HostileSite:
    def __init__(self, slow: float) -> None:
        self.slow = slow  # longer than the crawl's page timeout
        self.hits: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.base = ""
        # 256 MiB of zeros, gzipped: about 256 kB on the wire.
        self.bomb = gzip.compress(bytes(1 << 28), compresslevel=9)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if path == "/":
            links = "".join(f'<a href="{p}">{p}</a>' for p in GOOD[:1] + TRAPS)
            return _page(links)
        if path in GOOD:
            i = GOOD.index(path)
            nxt = f'<a href="{GOOD[i + 1]}">next</a>' if i + 1 < len(GOOD) else ""
            return _page(f'{nxt}<img src="/img/{i}.jpg">')
        if path.startswith("/img/"):
            return web.Response(body=make_image(int(path[5:-4])), content_type="image/jpeg")
        if path == "/slow":
            await asyncio.sleep(self.slow)
            return _page("too late")
        if path == "/stall":  # headers and a little, then nothing
            resp = web.StreamResponse(headers={"Content-Type": "text/html"})
            await resp.prepare(request)
            await resp.write(b"<html><body>")
            await asyncio.sleep(self.slow)
            return resp
        if path in ("/loop1", "/loop2"):
            raise web.HTTPFound("/loop2" if path == "/loop1" else "/loop1")
        if path in ("/huge", "/huge-chunked"):
            headers = {"Content-Type": "text/html"}
            if path == "/huge":
                headers["Content-Length"] = str(2 << 30)
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)
            try:
                for _ in range((2 << 30) // len(CHUNK)):
                    await resp.write(CHUNK)
            except (ConnectionResetError, asyncio.CancelledError):
                pass  # the crawler hung up: what we want
            return resp
        if path == "/bomb":
            return web.Response(
                body=self.bomb,
                headers={"Content-Type": "text/html", "Content-Encoding": "gzip"},
            )
        if path == "/malformed":
            return web.Response(
                body=b'<html><body><<a href="/ok1">\x00<div><p><a href="/ok2"</b></html',
                content_type="text/html",
            )
        if path == "/badenc":
            return web.Response(
                body=b'<html><body>caf\xe9 \xff\xfe <a href="/ok3">x</a></body></html>',
                headers={"Content-Type": "text/html; charset=utf-8"},
            )
        if path == "/calendar":
            month = int(request.query.get("month", "0"))
            return _page(f'<a href="/calendar?month={month + 1}">next month</a>')
        if path == "/always429":
            return web.Response(status=429, text="no", headers={"Retry-After": "1"})
        return web.Response(status=404, text="not found")

    async def start(self) -> HostileSite:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.shutdown()
            await self.runner.cleanup()


def hostile_site(slow: float = 4.0) -> ServerThread[HostileSite]:
    site = HostileSite(slow)
    return ServerThread(site.start, site.stop, "hostile-site")
