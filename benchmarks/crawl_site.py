"""The crawl benchmark's loopback site: pre-rendered pages on several hosts, optionally
with images (benign, re-encoded from the shared photos at 640-1,600 px in a web-like mix
of JPEG, PNG and WebP) and injected latency. It timestamps every request it serves."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web
from PIL import Image

from benchmarks.corpus import FORMATS, SEED, encode_web, load_rgb, photo_paths

EXT = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}


@dataclass(frozen=True)
class Picture:
    data: bytes
    ext: str
    content_type: str


def site_pictures(per_photo: int = 4) -> list[Picture]:
    """Distinct benign pictures, long side 640-1,600 px (the site serves them under many
    URLs: each URL is still fetched and hashed on its own)."""
    rng = np.random.default_rng(SEED)
    fmts, weights = zip(*FORMATS, strict=True)
    out = []
    for path in photo_paths():
        rgb = load_rgb(path)
        for _ in range(per_photo):
            long_side = int(rng.integers(640, 1601))
            scale = long_side / max(rgb.size)
            img = rgb.resize(
                (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                Image.Resampling.LANCZOS,
            )
            fmt = str(rng.choice(fmts, p=weights))
            data, _ = encode_web(img, fmt, rng)
            out.append(Picture(data, *EXT[fmt]))
    return out


@dataclass
class Site:
    pages: int
    hosts: int = 3
    images_per_page: int = 0
    pictures: list[Picture] = field(default_factory=list)
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, uniform per response
    port: int = 0
    page_hits: list[float] = field(default_factory=list)
    image_hits: list[float] = field(default_factory=list)
    body: dict[int, bytes] = field(default_factory=dict)
    runner: web.AppRunner | None = None

    def host(self, i: int) -> str:
        return f"127.0.0.{1 + i % self.hosts}"

    def url(self, i: int) -> str:
        return f"http://{self.host(i)}:{self.port}/p/{i}.html"

    def image_url(self, j: int) -> str:
        page = j // max(1, self.images_per_page)
        pic = self.pictures[j % len(self.pictures)]
        return f"http://{self.host(page)}:{self.port}/img/{j}.{pic.ext}"

    @property
    def images(self) -> int:
        return self.pages * self.images_per_page

    def render(self) -> None:
        rng = random.Random(7)
        for i in range(self.pages):
            targets = [c for c in (2 * i + 1, 2 * i + 2) if c < self.pages]
            targets += [0, *rng.sample(range(self.pages), 6)]
            links = "".join(f'<a href="{self.url(t)}">page {t}</a> ' for t in targets)
            first = i * self.images_per_page
            imgs = "".join(
                f'<img src="{self.image_url(j)}" alt="">'
                for j in range(first, first + self.images_per_page)
            )
            html = f"<html><head><title>{i}</title></head><body><p>{'text ' * 40}</p>"
            self.body[i] = (html + imgs + links + "</body></html>").encode()

    async def _wait(self) -> None:
        low, high = self.latency
        if high > 0:
            await asyncio.sleep(random.uniform(low, high))

    async def page(self, request: web.Request) -> web.Response:
        self.page_hits.append(time.monotonic())
        await self._wait()
        return web.Response(body=self.body[int(request.match_info["i"])], content_type="text/html")

    async def image(self, request: web.Request) -> web.Response:
        self.image_hits.append(time.monotonic())
        await self._wait()
        pic = self.pictures[int(request.match_info["j"]) % len(self.pictures)]
        return web.Response(body=pic.data, content_type=pic.content_type)

    async def start(self) -> Site:
        app = web.Application()
        app.router.add_get(r"/p/{i:\d+}.html", self.page)
        app.router.add_get(r"/img/{j:\d+}.{ext}", self.image)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host(0), 0).start()
        self.port = self.runner.addresses[0][1]
        for h in range(1, self.hosts):
            await web.TCPSite(self.runner, self.host(h), self.port).start()
        self.render()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def take(self) -> tuple[int, int, float]:
        """(pages served, images served, seconds from the first request to the last) since
        the last call."""
        pages, self.page_hits = self.page_hits, []
        images, self.image_hits = self.image_hits, []
        stamps = pages + images
        span = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
        return len(pages), len(images), span


def picture_bytes(site: Site) -> list[bytes]:
    """What the site serves, image by image (for the hash-only ceiling)."""
    return [site.pictures[j % len(site.pictures)].data for j in range(site.images)]
