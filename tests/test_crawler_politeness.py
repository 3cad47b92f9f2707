"""A real crawl (``run_crawl`` in a subprocess) against hosts that ask us to slow down: a
429 with Retry-After puts the page back and the host waits; robots.txt's Crawl-delay spaces
the requests; a host that always answers 429 is given up on with its reason, and the crawl
finishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from tests.conftest import REDIS_TEST_URL
from tests.crawl_probe import run_probe
from tests.imageserver import serve_handler


@contextmanager
def site(robots: str = "", busy: dict[str, int] | None = None, always_429: bool = False
         ) -> Iterator[tuple[str, list[tuple[float, str, int]]]]:  # fmt: skip
    """Pages /0../4 linked from /; ``busy[path]``: answer 429 (Retry-After: 1) that often
    first. Yields the base URL and the log of (time, path, status)."""
    log: list[tuple[float, str, int]] = []
    busy = dict(busy or {})

    async def handler(request: web.Request) -> web.Response:
        path = request.path
        if path == "/robots.txt":
            log.append((time.monotonic(), path, 200))
            return web.Response(text=robots or "User-agent: *\nAllow: /\n")
        if always_429 or busy.get(path, 0) > 0:
            if not always_429:
                busy[path] -= 1
            log.append((time.monotonic(), path, 429))
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        log.append((time.monotonic(), path, 200))
        links = "".join(f'<a href="/{i}">{i}</a>' for i in range(5)) if path == "/" else ""
        return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")

    with serve_handler(handler, "polite-site") as base:
        yield base, log


def crawl(base: str, tmp_path: Path, robots: str = "obey", **settings: object) -> dict[str, object]:
    args = {
        "robots": robots,
        "data_dir": str(tmp_path),
        "redis_url": REDIS_TEST_URL,
        "seeds": [base + "/"],
        "settings": {"allow_private_networks": True, **settings},
    }
    stats, _ = run_probe("arachne", args)
    return stats


def test_a_429_page_is_tried_again_after_the_hosts_retry_after(
    tmp_path: Path, redis_url: str
) -> None:
    with site(busy={"/3": 1}) as (base, log):
        stats = crawl(base, tmp_path)
    tries = [(at, status) for at, path, status in log if path == "/3"]
    assert [s for _, s in tries] == [429, 200], "put back, then crawled"
    assert tries[1][0] - tries[0][0] >= 0.9, "not before the host's Retry-After"
    assert stats["arachne/page_try_later"] == 1
    pages = {path for _, path, status in log if status == 200 and path.count("/") == 1}
    pages -= {"/robots.txt", "/sitemap.xml"}
    assert pages == {"/", "/0", "/1", "/2", "/3", "/4"}


def test_robots_crawl_delay_spaces_requests(tmp_path: Path, redis_url: str) -> None:
    robots = "User-agent: *\nCrawl-delay: 0.4\nAllow: /\n"
    with site(robots=robots) as (base, log):
        crawl(base, tmp_path, per_host_concurrency=4)
    # Scrapy reads robots.txt before the seed; every page after the seed is spaced.
    starts = sorted(at for at, path, _ in log if path not in ("/robots.txt", "/sitemap.xml"))
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 6 and min(gaps) >= 0.35, gaps


def test_crawl_delay_is_kept_under_robots_policy_ignore(tmp_path: Path, redis_url: str) -> None:
    # Scrapy does not read robots.txt then; the spider does (for Sitemap: lines), after
    # the seed: what it asks before that goes out unpaced, everything after is spaced.
    robots = "User-agent: *\nCrawl-delay: 0.4\nDisallow: /\n"
    with site(robots=robots) as (base, log):
        crawl(base, tmp_path, robots="ignore", per_host_concurrency=1)
    read = next(at for at, path, _ in log if path == "/robots.txt")
    pages = [at for at, path, _ in log if path.count("/") == 1 and path[1:].isdigit()]
    assert len(pages) == 5, "Disallow: / was ignored, as asked"
    after = sorted(at for at in pages if at > read + 0.05)
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert len(after) >= 3 and min(gaps) >= 0.35, gaps


def test_a_host_that_always_says_429_is_given_up_on_and_the_crawl_ends(
    tmp_path: Path, redis_url: str
) -> None:
    with site(always_429=True) as (base, log):
        started = time.monotonic()
        stats = crawl(base, tmp_path)
        took = time.monotonic() - started
    seed_tries = [status for _, path, status in log if path == "/"]
    assert seed_tries == [429, 429, 429], "three tries a run, then recorded"
    assert stats["arachne/page_gave_up"] == 1 and stats["arachne/page_try_later"] == 2
    assert took < 60
