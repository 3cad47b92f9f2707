"""Rematch tasks: the retroactive matching of store/rematch.py as jobs on the workers
(one per range of image ids, retried if a worker dies: recording is idempotent), with
progress in Redis per task, or all of it in the foreground (``arachne rematch --wait``)."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
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
FOREGROUND_PROCESSES = 2

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
            review_band=sel.review_band(settings.review_band, len(entries.pdq_ids)),
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
    """The whole rematch here (``arachne rematch --wait``, the benchmark): its ranges in
    ``FOREGROUND_PROCESSES`` forked processes, each with its own store connection (reading
    a million packed query sets is mostly Python-level driver work: threads would share
    one core)."""
    with store.session() as session:
        ranges = image_ranges(session) or [(0, 1)]
        entries = selected_entries(session, sel, settings.pdq_threshold)  # once, not per range
        _campaign_id(session, sel.campaign)  # an unknown name fails before any work
    band = sel.review_band(settings.review_band, len(entries.pdq_ids))
    total = {"images": 0, "matched_images": 0, "matches": 0, "review_items": 0,
             "ranges": len(ranges), "review_band": band}  # fmt: skip
    jobs = [(lo, hi, i == 0) for i, (lo, hi) in enumerate(ranges)]
    if len(jobs) == 1 or FOREGROUND_PROCESSES < 2:
        results = (
            run_range(store, settings, sel, lo, hi, first, entries) for lo, hi, first in jobs
        )
        return _add_up(total, results, on_range)
    store.engine.dispose(close=False)  # forked children must not share pooled connections
    with ProcessPoolExecutor(
        min(FOREGROUND_PROCESSES, len(jobs)),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_child_init,
        initargs=(settings, sel, entries),
    ) as pool:
        futures = [pool.submit(_child_range, lo, hi, first) for lo, hi, first in jobs]
        return _add_up(total, (f.result() for f in futures), on_range)


def _add_up(
    total: dict[str, int],
    results: Iterable[dict[str, int]],
    on_range: Callable[[int, dict[str, int]], None] | None,
) -> dict[str, int]:
    for i, counts in enumerate(results):
        for k in ("images", "matched_images", "matches", "review_items"):
            total[k] += counts[k]
        if on_range is not None:
            on_range(i, counts)
    return total


_child: tuple[Store, Settings, Selection, Entries] | None = None


def _child_init(settings: Settings, sel: Selection, entries: Entries) -> None:
    global _child
    _child = (Store.open(settings, migrate=False), settings, sel, entries)


def _child_range(lo: int, hi: int, first: bool) -> dict[str, int]:
    assert _child is not None
    store, settings, sel, entries = _child
    return run_range(store, settings, sel, lo, hi, first, entries)


def ranges_of(store: Store) -> Sequence[tuple[int, int]]:
    with store.session() as session:
        return image_ranges(session)
