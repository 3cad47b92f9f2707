"""A slow host's batch must not turn into false timeouts while requests wait for a slot."""

from __future__ import annotations

import asyncio

from arachne.queue.fetch import FetchConfig, fetch_many
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
