"""Queue overhead per image (issue 8 §6), used by ``benchmarks/crawl.py --part queue``.

What the queue adds to every image, with fetching, hashing and recording taken out: the
crawler's ``Enqueuer`` (per-run dedup, batching, one MULTI per job) and a real
``arachne worker`` (rq dequeue, a forked work horse per job, results) running a batch
function that only notes when it ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis import Redis

from arachne.queue.connection import image_queue
from arachne.queue.enqueue import Enqueuer, ImageRef
from arachne.settings import Settings

STAMPS = "bench:queue:stamps"


def noop_batch(campaign: str, refs: list[dict[str, Any]], run: int = 1) -> dict[str, int]:
    """Takes a batch like ``process_batch`` and does nothing with it but note the time."""
    redis = Redis.from_url(os.environ["REDIS_URL"])
    redis.rpush(STAMPS, f"{time.time()} {len(refs)}")
    return {"images": len(refs)}


class _NoopEnqueuer(Enqueuer):
    job_func = "benchmarks.queue_overhead.noop_batch"


def measure(env: dict[str, str], root: Path, images: int = 20_000) -> dict[str, float]:
    """ms per image spent enqueueing, and in the worker between batches, for ``images``
    image references in batches of the default size."""
    settings = Settings(redis_url=env["REDIS_URL"])
    redis = Redis.from_url(env["REDIS_URL"])
    redis.delete(STAMPS)
    enqueuer = _NoopEnqueuer(
        redis, image_queue(redis, settings), "bench-queue", batch_size=settings.batch_size
    )
    refs = [
        ImageRef(f"http://127.0.0.{1 + i % 3}/img/{i}.jpg", f"http://127.0.0.1/p/{i // 5}.html",
                 "bench-queue")
        for i in range(images)
    ]  # fmt: skip
    started = time.perf_counter()
    for lo in range(0, images, 5):  # as the spider hands them over: one page at a time
        enqueuer.add(refs[lo : lo + 5])
    enqueuer.flush()
    enqueue_s = time.perf_counter() - started
    # The worker's start-up (imports, index load) is not per-image work: the span from its
    # first batch to its last is, with one batch's share added for the first.
    subprocess.run(
        [sys.executable, "-m", "arachne", "worker", "--burst"],
        env=env, cwd=root, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    stamps = [float(raw.split()[0]) for raw in redis.lrange(STAMPS, 0, -1)]
    jobs = len(stamps)
    span = (max(stamps) - min(stamps)) * jobs / max(1, jobs - 1)
    return {
        "queue_images": images,
        "queue_jobs": jobs,
        "queue_enqueue_ms_per_image": round(1000 * enqueue_s / images, 3),
        "queue_worker_ms_per_image": round(1000 * span / images, 3),
        "queue_overhead_ms_per_image": round(1000 * (enqueue_s + span) / images, 3),
    }
