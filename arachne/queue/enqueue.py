"""Hand image references to the workers: per-run dedup, batches of up to ``batch_size``.

A URL is marked seen in Redis only when its batch is enqueued (one MULTI), so a crawler
killed with references still buffered loses nothing: they are not "seen" and a re-crawl
finds them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Retry

from arachne.queue import keys
from arachne.queue import stats as st
from arachne.urls import host_of, url_key

JOB_FUNC = "arachne.queue.jobs.process_batch"
RETRY_BACKOFF = (10, 60, 300)
"""Default seconds before the 1st, 2nd, … retry of a failed batch."""


@dataclass(frozen=True)
class ImageRef:
    """An image URL discovered on a page of a campaign."""

    url: str
    page: str | None
    campaign: str


@dataclass(frozen=True)
class InlineImage:
    """An image embedded in a page as a ``data:`` URI, hashed where it was found: only its
    hashes travel (never its bytes). ``url`` names it without its content:
    ``data:<media type>;sha256,<hex>``."""

    url: str
    page: str
    campaign: str
    hashes: dict[str, object]


INLINE_FUNC = "arachne.queue.jobs.process_inline"
INLINE_BATCH = 200


class Enqueuer:
    job_func = JOB_FUNC  # what runs a batch (benchmarks/crawl.py swaps in a no-op)

    def __init__(
        self,
        redis: Redis,
        queue: Queue,
        campaign: str,
        *,
        run: int = 1,
        batch_size: int = 200,
        retries: int = 3,
        retry_backoff: Sequence[int] = RETRY_BACKOFF,
        job_timeout: int = 900,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.campaign = campaign
        self.run = run
        self.seen_key = keys.run_seen(campaign, run)
        self.batch_size = batch_size
        # Backed-off retries ride out a short store or network outage instead of burning
        # every attempt in the same second (the workers run rq's scheduler for this).
        self.retry = Retry(max=retries, interval=list(retry_backoff)) if retries else None
        self.job_timeout = job_timeout
        self.stats = st.Stats(redis, campaign, run)
        # url → ref, in arrival order. Batches mix hosts: politeness is the cluster's per-host
        # slots now, so a worker fetches from many hosts at once instead of waiting on one
        # slow host's few slots.
        self._buffer: dict[str, ImageRef] = {}

    def add(self, refs: Iterable[ImageRef]) -> int:
        """Buffer new references; returns how many were new. Full batches are enqueued."""
        fresh = [r for r in refs if not self._buffered(r.url)]
        if not fresh:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for r in fresh:
            pipe.sismember(self.seen_key, url_key(r.url))
        seen = pipe.execute()
        new = [r for r, was_seen in zip(fresh, seen, strict=True) if not was_seen]
        for r in new:
            self._buffer[r.url] = r
        self.stats.inc_many({st.IMAGES_DUPLICATE: len(fresh) - len(new)})
        self._enqueue(full_only=True)
        return len(new)

    def flush(self) -> None:
        self._enqueue()

    def _submit(self, func: str, payload: list[dict[str, Any]], what: str, urls: list[str]) -> None:
        """One MULTI: the job and the "seen" marks of its URLs land together or not at all."""
        pipe = self.redis.pipeline(transaction=True)
        self.queue.enqueue(
            func,
            self.campaign,
            payload,
            self.run,
            job_timeout=self.job_timeout,
            retry=self.retry,
            result_ttl=24 * 3600,
            failure_ttl=30 * 24 * 3600,
            description=what,
            pipeline=pipe,
        )
        pipe.sadd(self.seen_key, *(url_key(u) for u in urls))
        pipe.execute()

    def add_inline(self, images: Sequence[InlineImage]) -> int:
        """Queue hashed inline images not seen in this run; returns how many were new."""
        fresh = list({i.url: i for i in images}.values())
        pipe = self.redis.pipeline(transaction=False)
        for image in fresh:
            pipe.sismember(self.seen_key, url_key(image.url))
        new = [i for i, seen in zip(fresh, pipe.execute(), strict=True) if not seen]
        for lo in range(0, len(new), INLINE_BATCH):
            chunk = new[lo : lo + INLINE_BATCH]
            payload = [{"url": i.url, "page": i.page, "hashes": i.hashes} for i in chunk]
            self._submit(
                INLINE_FUNC,
                payload,
                f"{self.campaign}: {len(chunk)} inline images",
                [i.url for i in chunk],
            )
        self.stats.inc_many(
            {st.IMAGES_QUEUED: len(new), st.IMAGES_DUPLICATE: len(fresh) - len(new)}
        )
        return len(new)

    def pending(self) -> int:
        return len(self._buffer)

    def _buffered(self, url: str) -> bool:
        return url in self._buffer

    def _enqueue(self, full_only: bool = False) -> None:
        """Send the buffer as batches; with ``full_only`` a partial tail stays."""
        while self._buffer and (len(self._buffer) >= self.batch_size or not full_only):
            chunk = list(self._buffer.values())[: self.batch_size]
            for r in chunk:
                del self._buffer[r.url]
            payload = [{"url": r.url, "page": r.page} for r in chunk]
            hosts = len({host_of(r.url) for r in chunk})
            self._submit(
                self.job_func,
                payload,
                f"{self.campaign}: {len(chunk)} images from {hosts} host(s)",
                [r.url for r in chunk],
            )
            self.stats.inc_many({st.IMAGES_QUEUED: len(chunk), st.JOBS_QUEUED: 1})
