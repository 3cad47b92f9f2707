"""A local site that embeds images in every way the crawler must find, with ground truth.

``DiscoverySiteThread`` serves it on 127.0.0.1 (a free port); ``localhost`` on the same port
stands for another host (a CDN for images, an off-scope site for pages). Images are tiny
generated PNG/JPEG/GIF/WebP files, made in memory with Pillow. ``python -m
tests.discovery_site <seed>`` crawls it with the real CampaignSpider in this process (Scrapy's
reactor runs once per process) and prints what was found as JSON.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from PIL import Image

from arachne.demo.background import ServerThread

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP"}
_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def make_image(name: str, fmt: str = "PNG") -> bytes:
    """A small benign image whose colours depend on ``name``."""
    d = hashlib.sha256(name.encode()).digest()
    img = Image.new("RGB", (24, 24), (d[0], d[1], d[2]))
    img.paste((d[3], d[4], d[5]), (0, 0, 12, 12))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def data_uris() -> list[str]:
    png = make_image("inline")
    return [
        "data:image/png;base64," + base64.b64encode(png).decode(),
        "data:image/png," + quote(make_image("inline-pct"), safe=""),
    ]


@dataclass
class DiscoveryManifest:
    base: str  # http://127.0.0.1:PORT (in scope)
    other: str  # http://localhost:PORT (another host)
    truth: dict[str, str] = field(default_factory=dict)  # image URL -> embedding kind
    data_uri_images: int = 0
    stylesheets_in_scope: int = 0


def _pages(b: str, o: str) -> tuple[dict[str, str], dict[str, str]]:
    """(path -> HTML, image URL -> kind) for base URL ``b`` and the other host ``o``."""
    host_o = o.split("://", 1)[1]
    truth: dict[str, str] = {}

    def img(path: str, kind: str, host: str = b) -> str:
        truth[host + path] = kind
        return host + path

    d1, d2 = data_uris()
    pages: dict[str, str] = {}
    pages["/"] = f"""<html><head><title>index</title></head><body>
      <a href="/basic.html">basic</a> <a href="/lazy.html">lazy</a>
      <a href="/css.html">css</a> <a href="/meta.html">meta</a>
      <a href="/structured.html">structured</a> <a href="/based/">base href</a>
      <a href="/files/">files</a>
      <a href="{o}/offscope.html">another site</a>
    </body></html>"""
    img("/img/a-src.png", "img src")
    img("/img/abs.jpg", "img src absolute")
    img("/img/pr.png", "protocol-relative", o)
    for name in ("s-480.jpg", "s-800.jpg", "s-1200.jpg"):
        img(f"/img/{name}", "srcset")
    for name in ("p.webp", "p-2x.webp", "p-wide.jpg", "p-fallback.jpg"):
        img(f"/img/{name}", "picture/source")
    img("/img/button.png", "input type=image")
    img("/img/full.jpg", "a href by extension")
    img("/download?id=7", "a href by Content-Type")
    img("/img/svg-href.png", "svg image href")
    img("/img/svg-xlink.png", "svg image xlink:href")
    img("/img/object.png", "object data")
    img("/img/noscript.jpg", "noscript")
    img("/img/poster.jpg", "video poster")
    pages["/basic.html"] = f"""<html><body>
      <img src="img/a-src.png"><img src="{b}/img/abs.jpg"><img src="//{host_o}/img/pr.png">
      <img src="/img/s-480.jpg" srcset="/img/s-480.jpg 480w, /img/s-800.jpg 800w,
           /img/s-1200.jpg 1200w" sizes="(max-width: 600px) 480px, calc(100vw - 2em)">
      <picture><source type="image/webp" srcset="/img/p.webp 1x, /img/p-2x.webp 2x">
        <source media="(min-width: 900px)" srcset="/img/p-wide.jpg">
        <img src="/img/p-fallback.jpg"></picture>
      <form><input type="image" src="/img/button.png" alt="go"></form>
      <a href="/img/full.jpg">full size</a> <a href="/download?id=7">original</a>
      <svg width="10" height="10"><image href="/img/svg-href.png"/>
        <image xlink:href="/img/svg-xlink.png"/></svg>
      <object data="/img/object.png" type="image/png"></object>
      <object data="/doc.pdf" type="application/pdf"></object>
      <noscript><img src="/img/noscript.jpg"></noscript>
      <video poster="/img/poster.jpg"><source src="/clip.mp4"></video>
      <img src="{d1}"><div style="background: url('{d2}')"></div>
      <a href="/not-an-image">a page</a>
    </body></html>"""
    pages["/not-an-image"] = "<html><body><p>text only</p></body></html>"
    for name in ("lz-src.jpg", "lz-lazy-src.jpg", "lz-original.jpg"):
        img(f"/img/{name}", "lazy data-src/data-lazy-src/data-original")
    for name in ("lz-set1.jpg", "lz-set2.jpg", "lz-oset1.jpg", "lz-oset2.jpg"):
        img(f"/img/{name}", "lazy data-srcset/data-original-set")
    for name in ("lz-bg-url.jpg", "lz-bg-bare.jpg"):
        img(f"/img/{name}", "lazy data-bg")
    for name in ("lz-bgset1.jpg", "lz-bgset2.jpg", "lz-bgset3.jpg"):
        img(f"/img/{name}", "lazy data-bgset")
    pages["/lazy.html"] = """<html><body>
      <img data-src="/img/lz-src.jpg"><img data-lazy-src="/img/lz-lazy-src.jpg">
      <img data-original="/img/lz-original.jpg">
      <img data-srcset="/img/lz-set1.jpg 1x, /img/lz-set2.jpg 2x">
      <img data-original-set="/img/lz-oset1.jpg 300w, /img/lz-oset2.jpg 600w">
      <div data-bg="url(/img/lz-bg-url.jpg)"></div><div data-bg="/img/lz-bg-bare.jpg"></div>
      <div data-bgset="/img/lz-bgset1.jpg [(max-width: 640px)] |
           /img/lz-bgset2.jpg 1x, /img/lz-bgset3.jpg 2x"></div>
    </body></html>"""
    img("/img/css-inline.png", "inline style url()")
    img("/img/css-block.png", "<style> url()")
    for name in ("is-1x.png", "is-2x.png"):
        img(f"/img/{name}", "image-set with url()")
    for name in ("wis-1x.png", "wis-2x.png", "is-avif.webp"):
        img(f"/img/{name}", "-webkit-image-set / image-set bare strings")
    img("/img/css-linked.png", "linked stylesheet url()")
    img("/css/deep/a-bg.png", "@import'ed stylesheet url() (relative to it)")
    img("/css/deep/b-bg.gif", "@import chain")
    img("/img/css-from-style-import.png", "@import in <style>")
    pages["/css.html"] = f"""<html><head>
      <link rel="stylesheet" href="/css/main.css">
      <link rel="stylesheet" href="{o}/css/cdn.css">
      <style>
        @import url("/css/style-import.css");
        @font-face {{ font-family: x; src: url(/fonts/x.woff2) format("woff2"); }}
        /* .old {{ background: url(/img/commented-out.png); }} */
        .a {{ background: url(/img/css-block.png) no-repeat; }}
        .b {{ background-image: image-set(url("/img/is-1x.png") 1x, url(/img/is-2x.png) 2x); }}
        .c {{ background-image: -webkit-image-set("/img/wis-1x.png" 1x, '/img/wis-2x.png' 2x); }}
        .d {{ background-image: image-set("/img/is-avif.webp" type("image/webp") 1x); }}
      </style></head><body>
      <div style="background-image: url(&quot;/img/css-inline.png&quot;)"></div>
      <a href="/css2.html">same stylesheet again</a>
    </body></html>"""
    pages["/css2.html"] = """<html><head><link rel="stylesheet" href="/css/main.css">
      <link rel="alternate stylesheet" href="/css/main.css"></head><body></body></html>"""
    img("/img/og.jpg", "og:image")
    img("/img/tw.png", "twitter:image")
    img("/img/favicon.png", "link rel=icon")
    img("/img/touch.png", "link rel=apple-touch-icon")
    img("/img/preload.jpg", "link rel=preload as=image href")
    for name in ("preload-1x.jpg", "preload-2x.jpg"):
        img(f"/img/{name}", "link rel=preload imagesrcset")
    pages["/meta.html"] = """<html><head>
      <meta property="og:image" content="/img/og.jpg">
      <meta name="twitter:image" content="/img/tw.png">
      <meta name="description" content="/img/not-an-image-description.jpg">
      <link rel="shortcut icon" href="/img/favicon.png">
      <link rel="apple-touch-icon" sizes="180x180" href="/img/touch.png">
      <link rel="preload" as="image" href="/img/preload.jpg"
            imagesrcset="/img/preload-1x.jpg 1x, /img/preload-2x.jpg 2x">
      <link rel="preload" as="font" href="/fonts/y.woff2">
      <link rel="canonical" href="/meta.html">
    </head><body></body></html>"""
    img("/img/ld-string.jpg", "JSON-LD image string")
    for name in ("ld-list1.jpg", "ld-list2.jpg"):
        img(f"/img/{name}", "JSON-LD image list")
    img("/img/ld-object-url.jpg", "JSON-LD ImageObject url")
    img("/img/ld-object-content.jpg", "JSON-LD ImageObject contentUrl")
    img("/img/ld-nested.png", "JSON-LD nested (author.image)")
    img("/img/ld-graph.png", "JSON-LD @graph ImageObject")
    ld = [
        {
            "@context": "https://schema.org",
            "@type": "Article",
            "url": "/structured.html",
            "image": "/img/ld-string.jpg",
            "author": {
                "@type": "Person",
                "url": "/about",
                "image": {"@type": "ImageObject", "url": "/img/ld-nested.png"},
            },
        },
        {"@type": "Product", "image": ["/img/ld-list1.jpg", "/img/ld-list2.jpg"]},
        {
            "@type": "NewsArticle",
            "image": {"@type": "ImageObject", "url": "/img/ld-object-url.jpg"},
        },
        {"@type": "Recipe", "image": {"contentUrl": "/img/ld-object-content.jpg"}},
        {
            "@graph": [
                {"@type": "ImageObject", "contentUrl": "/img/ld-graph.png"},
                {"@type": "WebPage", "url": "/structured.html"},
            ]
        },
    ]
    scripts = "".join(
        f'<script type="application/ld+json">{json.dumps(block)}</script>' for block in ld
    )
    pages["/structured.html"] = f"<html><head>{scripts}</head><body></body></html>"
    img("/assets/based.png", "base href")
    pages["/based/"] = """<html><head><base href="/assets/"></head><body>
      <img src="based.png"></body></html>"""
    img("/files/listing-a.jpg", "directory listing")
    img("/files/sub/listing-b.png", "directory listing (subdirectory)")
    pages["/files/"] = """<html><head><title>Index of /files/</title></head><body>
      <h1>Index of /files/</h1><table>
      <tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
      <tr><td><a href="/">Parent Directory</a></td></tr>
      <tr><td><a href="listing-a.jpg">listing-a.jpg</a></td><td>2026-01-01 10:00</td></tr>
      <tr><td><a href="sub/">sub/</a></td></tr></table></body></html>"""
    pages["/files/sub/"] = """<html><head><title>Index of /files/sub/</title></head><body>
      <h1>Index of /files/sub/</h1><hr><pre><a href="../">../</a>
<a href="listing-b.png">listing-b.png</a>                                01-Jan-2026 10:00    1234
</pre><hr></body></html>"""
    img("/img/sitemap-page.png", "page found only through a sitemap")
    img("/img/sm-image.jpg", "image sitemap image:loc")
    img("/img/sm-index-image.png", "image:loc via robots.txt sitemap index")
    img("/img/sm-gz-image.png", "image:loc in a gzipped sitemap")
    img("/img/sm-cdn.jpg", "image:loc on another host", o)
    pages["/sitemap-only.html"] = """<html><body><img src="/img/sitemap-page.png"></body></html>"""
    return pages, truth


def _sitemaps(b: str, o: str) -> dict[str, tuple[bytes, str]]:
    ns = (
        'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
    )

    def urlset(entries: str) -> bytes:
        return f'<?xml version="1.0" encoding="UTF-8"?><urlset {ns}>{entries}</urlset>'.encode()

    xml = "application/xml"
    return {
        "/robots.txt": (
            f"User-agent: *\nDisallow: /private/\nSitemap: {b}/sitemaps/index.xml\n".encode(),
            "text/plain",
        ),
        "/sitemap.xml": (
            urlset(
                f"<url><loc>{b}/sitemap-only.html</loc><image:image><image:loc>"
                f"{b}/img/sm-image.jpg</image:loc></image:image><image:image><image:loc>"
                f"{o}/img/sm-cdn.jpg</image:loc></image:image></url>"
                f"<url><loc>{o}/offscope-from-sitemap.html</loc></url>"
            ),
            xml,
        ),
        "/sitemaps/index.xml": (
            (
                f'<?xml version="1.0"?><sitemapindex {ns}>'
                f"<sitemap><loc>{b}/sitemaps/pages.xml</loc></sitemap>"
                f"<sitemap><loc>{b}/sitemaps/more.xml.gz</loc></sitemap>"
                f"<sitemap><loc>{o}/sitemaps/offscope.xml</loc></sitemap>"
                f"<sitemap><loc>{b}/sitemap.xml</loc></sitemap></sitemapindex>"
            ).encode(),
            xml,
        ),
        "/sitemaps/pages.xml": (
            urlset(
                f"<url><loc>{b}/</loc><image:image><image:loc>{b}/img/sm-index-image.png"
                "</image:loc></image:image></url>"
            ),
            xml,
        ),
        "/sitemaps/more.xml.gz": (
            gzip.compress(
                urlset(
                    f"<url><loc>{b}/css.html</loc><image:image><image:loc>"
                    f"{b}/img/sm-gz-image.png</image:loc></image:image></url>"
                )
            ),
            "application/gzip",
        ),
    }


_CSS = {
    "/css/main.css": (
        '@import "deep/a.css";\n@font-face { font-family: z; src: url("../fonts/z.woff"); }\n'
        "body { background: url(../img/css-linked.png); }\n"
    ),
    "/css/deep/a.css": "@import url(b.css);\n.x { background: url('a-bg.png') }\n",
    "/css/deep/b.css": ".y { background: url(b-bg.gif) }\n",
    "/css/style-import.css": ".z { background: url(/img/css-from-style-import.png) }\n",
    "/css/cdn.css": ".cdn { background: url(/img/cdn-css-not-fetched.png) }\n",
}
STYLESHEETS_IN_SCOPE = 4  # main, deep/a, deep/b, style-import (cdn.css is on another host)

# Off-scope pages: linked or listed, but never crawled; their images are not in the truth.
_OFFSCOPE = '<html><body><img src="/img/offscope-decoy.png"></body></html>'


def create_app() -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        host = request.host.split(":", 1)[0]
        port = request.url.port
        b, o = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
        path = request.path
        if host == "localhost" and path.endswith(".html"):
            return web.Response(text=_OFFSCOPE, content_type="text/html")
        if path == "/download":
            # An image behind a URL with no image extension: only its Content-Type says so.
            return web.Response(body=make_image(request.path_qs), content_type="image/png")
        ext = path[path.rfind(".") :].lower() if "." in path.rsplit("/", 1)[-1] else ""
        if ext in _FORMATS:
            fmt = _FORMATS[ext]
            return web.Response(body=make_image(path, fmt), content_type=_TYPES[fmt])
        if path in _CSS:
            return web.Response(text=_CSS[path], content_type="text/css")
        sitemaps = _sitemaps(b, o)
        if path in sitemaps:
            body, ctype = sitemaps[path]
            return web.Response(body=body, content_type=ctype)
        pages, _ = _pages(b, o)
        if path in pages and host == "127.0.0.1":
            return web.Response(text=pages[path], content_type="text/html")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


class _Server:
    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None

    async def start(self) -> DiscoveryManifest:
        self.runner = web.AppRunner(create_app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        b, o = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
        _, truth = _pages(b, o)
        return DiscoveryManifest(b, o, truth, len(data_uris()), STYLESHEETS_IN_SCOPE)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class DiscoverySiteThread(ServerThread[DiscoveryManifest]):
    def __init__(self) -> None:
        server = _Server()
        super().__init__(server.start, server.stop, "discovery-site")


class Collector:
    """Item pipeline of the test crawl: keeps every ImageRef, in order, and confirms each
    finished page's frontier lease at once (what the queue pipeline does after queueing)."""

    items: list[dict[str, Any]] = []
    inline: list[dict[str, Any]] = []  # data: images, hashed by the spider

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> Collector:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        from arachne.crawler.scheduler import PageDone, leases_done
        from arachne.queue.enqueue import InlineImage

        if isinstance(item, PageDone):
            self.crawler.signals.send_catch_log(signal=leases_done, leases=[item.lease])
        elif isinstance(item, InlineImage):
            Collector.inline.append({"url": item.url, "page": item.page, "hashes": item.hashes})
        else:
            Collector.items.append({"url": item.url, "page": item.page})
        return item


def crawl(seed: str, redis_url: str) -> dict[str, Any]:
    from scrapy.crawler import CrawlerProcess

    from arachne.crawler.runner import scrapy_settings
    from arachne.crawler.scope import Scope
    from arachne.crawler.spiders.campaign import CampaignSpider
    from arachne.settings import Settings

    # Scrapy loads the pipeline by its import path, not from __main__.
    from tests.discovery_site import Collector as LoadedCollector

    # The frontier in the test Redis (a campaign of its own); Collector keeps the items.
    campaign = f"discovery-{uuid.uuid4().hex[:8]}"
    config = scrapy_settings(Settings(allow_private_networks=True), redis_url, campaign)
    config["ITEM_PIPELINES"] = {"tests.discovery_site.Collector": 100}
    config["LOG_LEVEL"] = "ERROR"
    process = CrawlerProcess(config)
    crawler = process.create_crawler(CampaignSpider)
    process.crawl(crawler, campaign=campaign, seeds=[seed], scope=Scope.for_seeds([seed]))
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats else {}
    return {
        "images": LoadedCollector.items,
        "inline": LoadedCollector.inline,
        "stats": {k: v for k, v in stats.items() if isinstance(v, int)},
    }


if __name__ == "__main__":
    print(json.dumps(crawl(sys.argv[1], sys.argv[2])))
