"""A slow host's batch must not turn into false timeouts while requests wait for a slot."""

from __future__ import annotations

import asyncio

from arachne.queue.fetch import FetchConfig, FetchResult, fetch_many, fetch_then
from tests.imageserver import make_image, serve_slow


def test_waiting_for_a_host_slot_does_not_count_against_the_timeout() -> None:
    images = {f"/{i}.png": (200, "image/png", make_image(i, fmt="PNG")) for i in range(8)}
    config = FetchConfig(timeout=1.5, per_host=2, allow_private=True)
    with serve_slow(images, delay=0.6) as base:
        # 8 requests, 2 at a time, 0.6 s each: the last starts after ~1.8 s > the timeout.
        results = asyncio.run(fetch_many([base + p for p in images], config))
    assert [r.error for r in results] == [None] * 8
    assert all(r.content for r in results)


def test_a_request_that_is_itself_too_slow_still_times_out() -> None:
    images = {"/slow.png": (200, "image/png", make_image(1, fmt="PNG"))}
    with serve_slow(images, delay=2.0) as base:
        (result,) = asyncio.run(
            fetch_many([base + "/slow.png"], FetchConfig(timeout=0.5, allow_private=True))
        )
    assert result.error == "timeout"


def test_results_are_handed_on_as_they_arrive_and_held_bodies_are_bounded() -> None:
    """A worker hashes the first images while the rest download, and when hashing falls
    behind, fetching waits: never more than ``held`` bodies fetched but not yet handed on."""
    images = {f"/{i}.png": (200, "image/png", make_image(i, fmt="PNG")) for i in range(24)}
    config = FetchConfig(timeout=5, concurrency=8, per_host=8, allow_private=True)
    outstanding = 0
    most = 0
    handed: list[str] = []

    async def slow_hash(result: FetchResult) -> tuple[str, int]:
        nonlocal outstanding, most
        outstanding += 1
        most = max(most, outstanding)
        handed.append(result.url)
        await asyncio.sleep(0.05)  # slower than the loopback fetches
        outstanding -= 1
        return result.url, len(result.content or b"")

    async def both() -> tuple[list[tuple[str, int]], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first: list[float] = []

        async def timed(result: FetchResult) -> tuple[str, int]:
            if not first:
                first.append(loop.time() - started)
            return await slow_hash(result)

        return await fetch_then([base + p for p in images], config, timed, held=3), first[0]

    with serve_slow(images, delay=0.2) as base:
        results, first_at = asyncio.run(both())
    urls = [base + p for p in images]
    assert [url for url, _ in results] == urls  # input order, whatever the arrival order
    assert all(size > 0 for _, size in results)
    assert sorted(handed) == sorted(urls)
    assert most <= 3  # the bound held while hashing lagged
    # The first result was handed on after one response (0.2 s), not after the whole
    # batch (24 responses at most 3 at a time: 1.6 s and more).
    assert first_at < 0.6
