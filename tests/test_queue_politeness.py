"""Per-host slots and pacing shared by every process through Redis: limits, delays,
Retry-After, back-off, Crawl-delay, dead holders; the workers' fetcher and the frontier
drawing from the same slots."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiohttp import web
from redis import Redis

from arachne.crawler.frontier import Entry, Frontier
from arachne.queue.fetch import FetchConfig, fetch_many
from arachne.queue.politeness import BUSY, Answer, HostPoliteness
from tests.imageserver import make_image, serve_handler

HOST = "polite.test"


def test_slots_are_shared_and_limited(redis_client: Redis) -> None:
    one = HostPoliteness(redis_client, concurrency=2)
    two = HostPoliteness(redis_client, concurrency=2)  # another process
    assert one.acquire(HOST, "a") == 0 and two.acquire(HOST, "b") == 0
    assert one.acquire(HOST, "c") == BUSY and two.acquire(HOST, "c") == BUSY
    assert one.acquire("other.test", "c") == 0, "hosts are independent"
    one.done(HOST, "a", Answer(200))
    assert two.acquire(HOST, "c") == 0
    assert one.state(HOST)["in_flight"] == 2


def test_delay_spaces_request_starts(redis_client: Redis) -> None:
    polite = HostPoliteness(redis_client, concurrency=10, delay=0.5)
    assert polite.acquire(HOST, "a") == 0
    wait = polite.acquire(HOST, "b")
    assert 0.3 < wait <= 0.5
    time.sleep(wait + 0.02)
    assert polite.acquire(HOST, "b") == 0


def test_retry_after_blocks_the_host_capped(redis_client: Redis) -> None:
    polite = HostPoliteness(redis_client, concurrency=4, retry_after_max=5)
    assert polite.acquire(HOST, "a") == 0
    polite.done(HOST, "a", Answer(429, retry_after=2.0))
    assert 1.5 < polite.acquire(HOST, "b") <= 2.0
    assert polite.state(HOST)["reason"] == "HTTP 429"
    polite.done(HOST, None, Answer(503, retry_after=10_000_000))  # hostile
    assert 4 < polite.acquire(HOST, "b") <= 5.0


def test_back_off_doubles_on_errors_and_halves_on_good_answers(redis_client: Redis) -> None:
    polite = HostPoliteness(redis_client, concurrency=4, backoff_max=3)
    assert polite.done(HOST, None, Answer(503)) == 1.0
    assert polite.done(HOST, None, Answer(0, reason="timeout")) == 2.0
    assert polite.done(HOST, None, Answer(500)) == 3.0, "capped"
    assert polite.state(HOST)["reason"] == "HTTP 500"
    assert 2.5 < polite.acquire(HOST, "a") <= 3.0, "the next request waits for the back-off"
    assert polite.done(HOST, None, Answer(200)) == 1.5
    assert polite.done(HOST, None, Answer(200, latency=6.0)) == 3.0, "slow answers space it"
    for _ in range(6):
        last = polite.done(HOST, None, Answer(200, latency=0.01))
    assert last == 0


def test_crawl_delay_sets_the_gap(redis_client: Redis) -> None:
    polite = HostPoliteness(redis_client, concurrency=4)
    polite.set_crawl_delay(HOST, 1.0)
    assert polite.acquire(HOST, "a") == 0
    assert 0.8 < polite.acquire(HOST, "b") <= 1.0


def test_a_dead_holders_slot_frees_itself(redis_client: Redis) -> None:
    polite = HostPoliteness(redis_client, concurrency=1, slot_seconds=0.3)
    assert polite.acquire(HOST, "killed-worker") == 0
    assert polite.acquire(HOST, "b") == BUSY
    time.sleep(0.35)
    assert polite.acquire(HOST, "b") == 0


def test_frontier_and_workers_draw_from_the_same_slots(redis_client: Redis) -> None:
    frontier = Frontier(redis_client, "c", 1, per_host=2)
    frontier.add([Entry(f"http://{HOST}/p{i}", HOST) for i in range(3)])
    workers = HostPoliteness(redis_client, concurrency=2)
    assert workers.acquire(HOST, "image-1") == 0
    (page,) = frontier.lease(10)  # one slot left for pages
    assert frontier.lease(10) == [] and workers.acquire(HOST, "image-2") == BUSY
    workers.done(HOST, "image-1", Answer(200))
    time.sleep(0.15)  # the frontier looks at a host it found busy again 100 ms later
    assert len(frontier.lease(10)) == 1
    # The page's answer is in: its slot is freed, though the page is not confirmed yet.
    assert workers.acquire(HOST, "image-2") == BUSY
    frontier.lease(0, fetched=[page.id])
    assert workers.acquire(HOST, "image-2") == 0


@contextmanager
def counting_server(delay: float, status: int = 200, headers: dict[str, str] | None = None
                    ) -> Iterator[tuple[str, dict[str, int]]]:  # fmt: skip
    seen: dict[str, int] = Counter()
    body = make_image(1)

    async def handler(request: web.Request) -> web.Response:
        seen["requests"] += 1
        seen["active"] += 1
        seen["max_active"] = max(seen["max_active"], seen["active"])
        try:
            await asyncio.sleep(delay)
        finally:
            seen["active"] -= 1
        if status != 200:
            return web.Response(status=status, text="later", headers=headers or {})
        return web.Response(body=body, content_type="image/jpeg")

    with serve_handler(handler, "counting") as base:
        yield base, seen


def polite_config(redis: Redis, **kw: float) -> FetchConfig:
    from arachne.settings import Settings

    settings = Settings(allow_private_networks=True, per_host_concurrency=2, **kw)
    return FetchConfig.from_settings(settings, redis)


@pytest.mark.parametrize("workers", [2])
def test_workers_together_stay_within_the_hosts_limit(redis_client: Redis, workers: int) -> None:
    with counting_server(delay=0.1) as (base, seen):
        urls = [f"{base}/{i}.jpg" for i in range(12)]

        async def both() -> list[list[object]]:
            # Each "worker" alone would fetch 2 at a time (its own limit): together 4,
            # but the cluster's slots hold them to 2.
            configs = [polite_config(redis_client) for _ in range(workers)]
            return await asyncio.gather(*(fetch_many(urls, c) for c in configs))

        results = asyncio.run(both())
    assert all(r.error is None for batch in results for r in batch)  # type: ignore[attr-defined]
    assert seen["requests"] == 24 and seen["max_active"] == 2, dict(seen)


def test_a_429_host_puts_the_rest_off_without_asking(redis_client: Redis) -> None:
    with counting_server(0.0, status=429, headers={"Retry-After": "120"}) as (base, seen):
        config = polite_config(redis_client, host_wait_max=1.0)
        (first,) = asyncio.run(fetch_many([base + "/a.jpg"], config))
        assert first.error == "http_429"
        later = asyncio.run(fetch_many([base + "/b.jpg", base + "/c.jpg"], config))
    assert [r.error for r in later] == ["host_busy", "host_busy"]
    assert 110 <= int(later[0].headers["retry-after"]) <= 120
    assert seen["requests"] == 1, "the blocked host was not asked again"
