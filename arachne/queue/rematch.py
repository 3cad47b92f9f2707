"""Rematch tasks: the retroactive matching of store/rematch.py as jobs on the workers
(one per range of image ids, retried if a worker dies: recording is idempotent), with
progress in Redis per task, or all of it in the foreground (``arachne rematch --wait``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from redis import Redis
from rq import Queue, Retry
from sqlalchemy.orm import Session

from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.rematch import (
    Entries,
    Selection,
    image_ranges,
    match_range,
    selected_entries,
)
from arachne.store.summary import get_campaign

REMATCH_FUNC = "arachne.queue.rematch.rematch_job"
FOREGROUND_THREADS = 2

__all__ = ["Selection", "enqueue_rematch", "progress", "ranges_of", "rematch_job", "rematch_now"]


def _progress_key(task: str) -> str:
    return f"arachne:rematch:{task}"


def _campaign_id(session: Session, name: str | None) -> int | None:
    return None if name is None else get_campaign(session, name).id


def run_range(
    store: Store,
    settings: Settings,
    sel: Selection,
    lo: int,
    hi: int,
    first: bool,
    entries: Entries | None = None,
) -> dict[str, int]:
    """One range of a rematch (the exact digests, which need no range, with the first)."""
    with store.session() as session:
        if entries is None:
            entries = selected_entries(session, sel, settings.pdq_threshold)
        return match_range(
            session,
            entries,
            lo,
            hi,
            min_quality=settings.pdq_min_quality,
            campaign_id=_campaign_id(session, sel.campaign),
            with_exact=first,
            review_band=settings.review_band,
        )


def enqueue_rematch(
    store: Store, redis: Redis, settings: Settings, sel: Selection, queue: Queue | None = None
) -> tuple[str, int]:
    """Queue a rematch on the workers; (task id, jobs)."""
    from arachne.queue.connection import image_queue

    with store.session() as session:
        ranges = image_ranges(session) or [(0, 1)]  # the exact part runs even with none
        _campaign_id(session, sel.campaign)  # an unknown name fails here, not in a job
    task = uuid.uuid4().hex[:12]
    key = _progress_key(task)
    redis.hset(key, mapping={"jobs": len(ranges), "done": 0, "matches": 0, "images": 0,
                             "started": time.time(), "selection": repr(asdict(sel))})  # fmt: skip
    redis.expire(key, 30 * 24 * 3600)
    queue = queue or image_queue(redis, settings)
    for i, (lo, hi) in enumerate(ranges):
        queue.enqueue(
            REMATCH_FUNC,
            task,
            asdict(sel),
            lo,
            hi,
            i == 0,
            job_timeout=settings.job_timeout,
            retry=Retry(max=3, interval=[10, 60, 300]),
            description=f"rematch {task}: images {lo}-{hi - 1}",
        )
    return task, len(ranges)


def rematch_job(task: str, sel: dict[str, Any], lo: int, hi: int, first: bool) -> dict[str, int]:
    """rq job: one range of a queued rematch."""
    from arachne.queue.jobs import get_context

    ctx = get_context()
    counts = run_range(ctx.store, ctx.settings, Selection(**sel), lo, hi, first)
    key = _progress_key(task)
    pipe = ctx.redis.pipeline()
    pipe.hincrby(key, "done", 1)
    pipe.hincrby(key, "matches", counts["matches"])
    pipe.hincrby(key, "images", counts["images"])
    pipe.hincrby(key, "review_items", counts["review_items"])
    pipe.execute()
    return counts


def progress(redis: Redis, task: str) -> dict[str, int]:
    raw = redis.hgetall(_progress_key(task))
    return {k.decode(): int(float(v)) for k, v in raw.items() if k != b"selection"}


def rematch_now(
    store: Store,
    settings: Settings,
    sel: Selection,
    on_range: Callable[[int, dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """The whole rematch in this process (``arachne rematch --wait``, the benchmark)."""
    with store.session() as session:
        ranges = image_ranges(session) or [(0, 1)]
        entries = selected_entries(session, sel, settings.pdq_threshold)  # once, not per range
        _campaign_id(session, sel.campaign)  # an unknown name fails before any work
    total = {"images": 0, "matched_images": 0, "matches": 0, "review_items": 0,
             "ranges": len(ranges)}  # fmt: skip
    # Ranges two at a time: reading the store and numpy release the GIL, so a small update
    # (all reading) takes about half as long on two cores.
    with ThreadPoolExecutor(FOREGROUND_THREADS, thread_name_prefix="rematch") as pool:
        futures = [
            pool.submit(run_range, store, settings, sel, lo, hi, i == 0, entries)
            for i, (lo, hi) in enumerate(ranges)
        ]
        for i, future in enumerate(futures):
            counts = future.result()
            for k in ("images", "matched_images", "matches", "review_items"):
                total[k] += counts[k]
            if on_range is not None:
                on_range(i, counts)
    return total


def ranges_of(store: Store) -> Sequence[tuple[int, int]]:
    with store.session() as session:
        return image_ranges(session)
