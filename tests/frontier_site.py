"""A loopback site for crawl tests with ground truth: ``pages`` pages in a tree (each links
its two children and back to the root), two image URLs a page, an optional delay per page,
spread over ``hosts`` loopback addresses (page i on 127.0.0.(1 + i % hosts)); the images are
benign generated JPEGs. It counts every request and, per host, the most requests (pages and
images together) it served at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from arachne.demo.background import ServerThread
from tests.imageserver import make_image


@dataclass
class SiteState:
    pages: int
    delay: float = 0.0
    hosts: int = 1
    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)  # page URL → requests
    image_hits: Counter[str] = field(default_factory=Counter)  # image URL → requests
    active: Counter[str] = field(default_factory=Counter)  # host → requests in progress
    max_active: Counter[str] = field(default_factory=Counter)

    def host(self, i: int) -> str:
        return f"127.0.0.{1 + i % self.hosts}"

    def page(self, i: int) -> str:
        return f"http://{self.host(i)}:{self.port}/p/{i}.html"

    @property
    def base(self) -> str:
        return f"http://{self.host(0)}:{self.port}"

    def host_names(self) -> list[str]:
        return [self.host(i) for i in range(self.hosts)]

    def page_urls(self) -> set[str]:
        return {self.page(i) for i in range(self.pages)}

    def image_urls(self) -> set[str]:
        return {
            f"http://{self.host(i)}:{self.port}/img/{i}-{s}.jpg"
            for i in range(self.pages)
            for s in "ab"
        }

    def pages_hit(self) -> int:
        return len(self.hits)


class _Site:
    def __init__(self, state: SiteState) -> None:
        self.state = state
        self.runner: web.AppRunner | None = None

    async def _serve(self, host: str) -> None:
        """Count the request in flight on its host for as long as it takes."""
        state = self.state
        state.active[host] += 1
        state.max_active[host] = max(state.max_active[host], state.active[host])
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
        finally:
            state.active[host] -= 1

    async def image(self, request: web.Request) -> web.Response:
        i, host = int(request.match_info["i"]), request.url.host or ""
        if i >= self.state.pages or host != self.state.host(i):
            raise web.HTTPNotFound()
        self.state.image_hits[str(request.url)] += 1
        await self._serve(host)
        return web.Response(body=make_image(i), content_type="image/jpeg")

    async def page(self, request: web.Request) -> web.Response:
        state = self.state
        i = int(request.match_info["i"])
        host = request.url.host or ""
        if i >= state.pages or host != state.host(i):
            raise web.HTTPNotFound()
        state.hits[state.page(i)] += 1
        await self._serve(host)
        links = "".join(
            f'<a href="{state.page(c)}">child</a>'
            for c in (2 * i + 1, 2 * i + 2)
            if c < state.pages
        )
        body = (
            f'<html><body><a href="{state.page(0)}">home</a>{links}'
            f'<img src="/img/{i}-a.jpg"><img src="/img/{i}-b.jpg"></body></html>'
        )
        return web.Response(text=body, content_type="text/html")

    async def start(self) -> SiteState:
        app = web.Application()
        app.router.add_get(r"/p/{i:\d+}.html", self.page)
        app.router.add_get(r"/img/{i:\d+}-{s:[ab]}.jpg", self.image)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        first = web.TCPSite(self.runner, self.state.host(0), 0)
        await first.start()
        self.state.port = self.runner.addresses[0][1]
        for name in self.state.host_names()[1:]:
            await web.TCPSite(self.runner, name, self.state.port).start()
        return self.state

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def tree_site(pages: int, delay: float = 0.0, hosts: int = 1) -> ServerThread[SiteState]:
    site = _Site(SiteState(pages, delay, hosts))
    return ServerThread(site.start, site.stop, "tree-site")
