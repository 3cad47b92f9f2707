"""The benign demo website: one aiohttp app per loopback address, served from memory.

``DemoSite`` binds 127.0.0.2-4 (Linux routes all of 127/8 to loopback) on free ports, then
builds the pages, whose absolute cross-host links need those ports, and returns a
``SiteManifest``: the seed, every page and image URL, and the ground truth a campaign
against the site must reproduce. ``DemoSiteThread`` runs it for synchronous callers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from PIL import Image

from arachne.demo import images
from arachne.demo.background import ServerThread
from arachne.demo.layout import HostContent, Layout, build_layout, check_capacity

CONTENT = web.AppKey("content", HostContent)
ROBOTS_TXT = "User-agent: *\nAllow: /\n"
DEFAULT_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass(frozen=True)
class SiteManifest:
    seed_url: str
    hosts: list[str]  # base URLs, e.g. ["http://127.0.0.2:41234", ...]
    host_names: list[str]  # ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    pages: list[str]  # every content page URL (not trap pages)
    image_urls: set[str]  # every image URL referenced from the content pages (bad ones too)
    expected_matches: dict[str, str]  # image URL -> "exact" | "near"
    bad_urls: dict[str, str]  # image URL -> http_404 | not_an_image | truncated | ...
    known_list_text: str  # `pdq <hex>` / `md5 <hex>` lines (python-threatexchange)
    known_list_csv: str  # md5,sha1,sha256,pdq,category,id
    # image URL -> where it first appears: img_src, img_srcset, picture_source, inline_style,
    # style_block, lazy_src, lazy_srcset, a_href or og_image (for diagnosing a crawler's misses)
    embeddings: dict[str, str] = field(default_factory=dict)
    trap_url: str | None = None  # first page of the endless calendar (never in `pages`)


# --- the app ------------------------------------------------------------------------------


async def robots(request: web.Request) -> web.Response:
    return web.Response(text=ROBOTS_TXT, content_type="text/plain")


async def calendar(request: web.Request) -> web.Response:
    """A crawler trap: every day links to the next one, forever, and holds no images."""
    if not request.app[CONTENT].trap:
        raise web.HTTPNotFound()
    try:
        day = dt.date.fromisoformat(request.match_info["day"])
        following, previous = day + dt.timedelta(days=1), day - dt.timedelta(days=1)
    except (ValueError, OverflowError):
        raise web.HTTPNotFound() from None
    body = (
        f"<!doctype html><html><head><title>Events on {day}</title></head><body>"
        f"<h1>Events on {day}</h1><p>No events.</p>"
        f'<a href="/calendar/{previous}">Previous day</a> '
        f'<a href="/calendar/{following}">Next day</a></body></html>\n'
    )
    return web.Response(text=body, content_type="text/html")


TAKEDOWN_MODES = ("404", "410", "451", "500", "403", "changed", "html", "slow", "up")
"""How a taken-down image answers: an HTTP status; ``changed``: a different (benign, plain
grey) picture; ``html``: a soft 404 page with status 200; ``slow``: no answer for 60 s;
``up``: served again (reappeared)."""


@functools.cache
def _placeholder_png() -> bytes:
    # The kind of "image removed" picture hosts put in place of content: flat, matches nothing.
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 200, 200)).save(buf, "PNG")
    return buf.getvalue()


async def _taken_down(mode: str) -> web.Response:
    if mode == "changed":
        return web.Response(body=_placeholder_png(), headers={"Content-Type": "image/png"})
    if mode == "html":
        return web.Response(text="<html><body>Not found</body></html>", content_type="text/html")
    if mode == "slow":
        await asyncio.sleep(60)
        raise web.HTTPGatewayTimeout()
    return web.Response(status=int(mode), text=f"{mode}\n")


async def content(request: web.Request) -> web.Response:
    host = request.app[CONTENT]
    mode = host.takedowns.get(request.path)
    if mode is not None and mode != "up":
        return await _taken_down(mode)
    page = host.pages.get(request.path)
    if page is not None:
        return web.Response(text=page, content_type="text/html")
    resource = host.resources.get(request.path)
    if resource is None:
        raise web.HTTPNotFound()
    if resource.data is None:  # a generated picture, first asked for: a few ms of CPU
        await asyncio.get_running_loop().run_in_executor(None, resource.body)
    return web.Response(body=resource.body(), headers={"Content-Type": resource.content_type})


def create_app(host: HostContent) -> web.Application:
    app = web.Application()
    app[CONTENT] = host
    app.router.add_get("/robots.txt", robots, name="robots")
    app.router.add_get("/calendar/{day}", calendar, name="calendar")
    app.router.add_get("/{path:.*}", content, name="content")
    return app


# --- lifecycle ----------------------------------------------------------------------------


class DemoSite:
    """Async API: ``manifest = await site.start()`` … ``await site.stop()``."""

    def __init__(
        self,
        photos_dir: Path,
        *,
        host_ips: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
        pages: int = 220,
        images_per_page: int = 6,
        seed: int = 1234,
        known_count: int = 6,
    ) -> None:
        if len(set(host_ips)) < 2:
            raise ValueError("the demo site needs at least two distinct host addresses")
        check_capacity(pages, images_per_page, known_count)
        self.photos_dir = Path(photos_dir)
        self.host_ips = list(host_ips)
        self.n_pages = pages
        self.images_per_page = images_per_page
        self.seed = seed
        self.known_count = known_count
        self.manifest: SiteManifest | None = None
        self._runners: list[web.AppRunner] = []
        self._hosts: dict[str, HostContent] = {}  # base URL -> its content

    async def start(self) -> SiteManifest:
        hosts = [HostContent() for _ in self.host_ips]
        bases: list[str] = []
        try:
            for ip, host in zip(self.host_ips, hosts, strict=True):
                runner = web.AppRunner(create_app(host), access_log=None)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, ip, 0)
                try:
                    await site.start()
                except OSError as exc:
                    raise OSError(f"cannot bind {ip} (is 127.0.0.0/8 routed to loopback?)") from exc
                port = runner.addresses[0][1]
                bases.append(f"http://{ip}:{port}")
            # Seconds of CPU (decoding, hashing): off the event loop, which may be serving.
            layout = await asyncio.to_thread(self._build, bases)
        except BaseException:
            await self.stop()
            raise
        for base, host, built in zip(bases, hosts, layout.hosts, strict=True):
            host.pages, host.resources, host.trap = built.pages, built.resources, built.trap
            self._hosts[base] = host
        self.manifest = SiteManifest(
            seed_url=layout.pages[0],
            hosts=bases,
            host_names=list(self.host_ips),
            pages=layout.pages,
            image_urls=layout.image_urls,
            expected_matches=layout.expected_matches,
            bad_urls=layout.bad_urls,
            known_list_text=layout.known_list_text,
            known_list_csv=layout.known_list_csv,
            embeddings=layout.embeddings,
            trap_url=layout.trap_url,
        )
        return self.manifest

    def take_down(self, url: str, mode: str = "404") -> None:
        """Make one URL of the site answer as if its content was removed (``mode`` from
        TAKEDOWN_MODES; ``up`` serves it again). Safe from any thread: one dict write."""
        if mode not in TAKEDOWN_MODES:
            raise ValueError(f"unknown take-down mode {mode!r} (one of {TAKEDOWN_MODES})")
        split = urlsplit(url)
        host = self._hosts.get(f"{split.scheme}://{split.netloc}")
        if host is None:
            raise ValueError(f"{url} is not on this demo site")
        host.takedowns[split.path] = mode

    def _build(self, bases: list[str]) -> Layout:
        catalogue = images.build_catalogue(self.photos_dir, self.known_count, self.seed)
        return build_layout(
            catalogue, bases, n_pages=self.n_pages, per_page=self.images_per_page, seed=self.seed
        )

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()


class DemoSiteThread(ServerThread[SiteManifest]):
    """For synchronous callers (the CLI): ``with DemoSiteThread(photos) as manifest: ...``."""

    def __init__(self, photos_dir: Path, **kwargs: Any) -> None:
        self.site = DemoSite(photos_dir, **kwargs)
        super().__init__(self.site.start, self.site.stop, "demo-site")
