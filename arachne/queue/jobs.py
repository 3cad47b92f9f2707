"""rq job functions: plain, importable, JSON arguments only, idempotent.

A job carries a batch of image URLs of one campaign: fetch them concurrently, hash each
in memory, match, and record everything in one transaction. A bad image becomes a
recorded error; only infrastructure failures (store or Redis down) fail the job, and rq
retries it (recording is idempotent, so a retry is safe).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue, get_current_job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arachne.matcher.hashing import ImageHashes, hash_image_bytes, hashes_from_json
from arachne.matcher.index import LinearPDQIndex
from arachne.matcher.match import Matcher
from arachne.matcher.mih import LINEAR_BELOW
from arachne.queue import keys, latency
from arachne.queue import stats as st
from arachne.queue.connection import image_queue, redis_from_settings
from arachne.queue.enqueue import JOB_FUNC
from arachne.queue.feedback import RunFeedback
from arachne.queue.fetch import FetchConfig, FetchResult, fetch_then, retry_after_seconds
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.hashlists import active_entries
from arachne.store.models import Campaign, HashChange, HashEntry, HashList
from arachne.store.records import ImageOutcome, record_outcomes
from arachne.urls import host_of

log = logging.getLogger(__name__)


class WorkerContext:
    """Per-process state a worker keeps between jobs: store, Redis, the loaded index."""

    def __init__(self, settings: Settings, redis: Redis, store: Store) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.matcher: Matcher | None = None
        self.generation: tuple[object, ...] | None = None
        self._list_thresholds: dict[int, int | None] = {}
        self._last_change = 0
        self._max_entry_id = 0
        self.reloads = 0  # full index builds so far (the rest are in-place updates)
        self.pid = os.getpid()
        self._campaign_ids: dict[str, int] = {}
        self._fetch_config: FetchConfig | None = None

    def refresh_if_stale(self) -> None:
        """Bring the known-hash index up to date after list imports.

        Cheap when nothing changed (one small query). After an import the index is updated
        in place: new entries are those above the highest id loaded, and changed ones
        (retracted, restored, re-labelled) are replayed from ``hash_changes``. A change of a
        list's threshold, or a brute-force index grown past its size, means a full reload.
        """
        # One snapshot for the whole refresh: an import committing meanwhile is seen
        # entirely (next time) or not at all, never half (a batch matched against a mix).
        with self.store.snapshot() as session:
            generation = tuple(
                session.execute(
                    select(func.count(HashList.id), func.max(HashList.updated_at))
                ).one()
            )
            if self.matcher is not None and generation == self.generation:
                return
            thresholds = dict(session.execute(select(HashList.id, HashList.threshold)).all())
            if self.matcher is None or thresholds != self._list_thresholds:
                self._full_reload(session)
            else:
                self._apply_changes(session)
        assert self.matcher is not None
        if isinstance(self.matcher.pdq, LinearPDQIndex) and len(self.matcher.pdq) > LINEAR_BELOW:
            with self.store.snapshot() as session:
                self._full_reload(session)  # big enough now for the multi-index
        self.generation = generation
        self._list_thresholds = thresholds

    def _full_reload(self, session: Session) -> None:
        # Read the change marker first: replaying a change already in the rows is harmless.
        self._last_change = session.scalar(select(func.max(HashChange.id))) or 0
        rows = list(active_entries(session))
        self._max_entry_id = max((row[0] for row in rows), default=0)
        self.matcher = Matcher(
            rows,
            default_threshold=self.settings.pdq_threshold,
            min_quality=self.settings.pdq_min_quality,
            review_band=self.settings.review_band,
        )
        self.reloads += 1
        log.info("loaded %d known hashes", len(self.matcher))

    def _apply_changes(self, session: Session) -> None:
        assert self.matcher is not None
        changes = session.execute(
            select(HashChange.id, HashChange.entry_id).where(HashChange.id > self._last_change)
        ).all()
        changed_ids = sorted({entry_id for _, entry_id in changes})
        changed = []
        for start in range(0, len(changed_ids), 900):
            changed += session.execute(
                select(
                    HashEntry.id,
                    HashEntry.list_id,
                    HashEntry.kind,
                    HashEntry.value,
                    func.coalesce(HashEntry.threshold, HashList.threshold),
                    HashEntry.deleted_at,
                )
                .join(HashList, HashList.id == HashEntry.list_id)
                .where(HashEntry.id.in_(changed_ids[start : start + 900]))
            ).all()
        new = list(active_entries(session, min_id=self._max_entry_id + 1))
        self.matcher.remove_entries((r[0], r[2], r[3]) for r in changed)
        self.matcher.add_entries(
            (r[0], r[1], r[2], r[3], r[4])
            for r in changed
            if r[5] is None and r[0] <= self._max_entry_id  # newer ones come with `new`
        )
        self.matcher.add_entries(new)
        self._last_change = max((cid for cid, _ in changes), default=self._last_change)
        self._max_entry_id = max((row[0] for row in new), default=self._max_entry_id)
        log.info("index updated: %d changed, %d new known hashes", len(changed), len(new))

    def in_this_process(self) -> None:
        """After rq forks a work horse, don't share the parent's database sockets."""
        if os.getpid() != self.pid:
            self.store.engine.dispose(close=False)
            self.pid = os.getpid()

    def campaign_id(self, name: str) -> int:
        if name not in self._campaign_ids:
            with self.store.session() as session:
                cid = session.scalar(select(Campaign.id).where(Campaign.name == name))
            if cid is None:
                raise LookupError(f"campaign {name!r} is not in the store")
            self._campaign_ids[name] = cid
        return self._campaign_ids[name]

    def fetch_config(self) -> FetchConfig:
        # Built once: its politeness scripts are registered with this worker's Redis.
        if self._fetch_config is None:
            self._fetch_config = FetchConfig.from_settings(self.settings, self.redis)
        return self._fetch_config


_context: WorkerContext | None = None


def set_context(context: WorkerContext | None) -> None:
    global _context
    _context = context


def get_context() -> WorkerContext:
    """The worker's context; a process that runs jobs without `arachne worker` builds one."""
    global _context
    if _context is None:
        settings = Settings()
        _context = WorkerContext(settings, redis_from_settings(settings), Store.open(settings))
    _context.in_this_process()
    return _context


RETRY_AFTER_CAP = 3600.0
"""Seconds a server's Retry-After may delay a re-fetch at most."""

TRANSIENT_ERRORS = frozenset(
    {
        "timeout",
        "connection_error",
        "dns_error",
        "http_error",
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "host_busy",
    }
)
"""Fetch failures worth another try later; anything else is recorded at once."""
NOT_TRIED = frozenset({"host_busy"})
"""Put off without asking the host (its slots or pacing): not counted as an attempt."""


def _schedule_refetch(
    ctx: WorkerContext,
    campaign: str,
    outcomes: list[ImageOutcome],
    pages: dict[str, Any],
    attempts: dict[str, int],
    run: int,
) -> None:
    def next_attempt(o: ImageOutcome) -> int:
        return attempts[o.image_url] + (0 if o.error in NOT_TRIED else 1)

    attempt = max(next_attempt(o) for o in outcomes)
    payload = [
        {"url": o.image_url, "page": pages.get(o.image_url), "attempt": next_attempt(o)}
        for o in outcomes
    ]
    # A server that said when to come back (429/503 Retry-After) is not asked sooner; an
    # hour at most, so a hostile value cannot park the URL for ever.
    wait = float(ctx.settings.fetch_retry_delay * max(attempt, 1))
    hinted = [retry_after_seconds(o.headers.get("retry-after")) for o in outcomes]
    wait = max([wait, *(min(h, RETRY_AFTER_CAP) for h in hinted if h is not None)])
    _later(ctx, campaign, payload, run, wait, f"re-fetch (attempt {attempt + 1})")


def _later(
    ctx: WorkerContext,
    campaign: str,
    refs: list[dict[str, Any]],
    run: int,
    seconds: float,
    why: str,
) -> None:
    """The batch again in ``seconds``, on the queue it came from (a campaign keeps its
    priority)."""
    current = get_current_job()
    queue = (
        Queue(current.origin, connection=ctx.redis, serializer=JSONSerializer)
        if current is not None
        else image_queue(ctx.redis, ctx.settings)
    )
    queue.enqueue_in(
        timedelta(seconds=seconds),
        JOB_FUNC,
        campaign,
        refs,
        run,
        job_timeout=ctx.settings.job_timeout,
        description=f"{campaign}: {len(refs)} images, {why}",
    )


PAUSED_RECHECK = 30.0
"""Seconds before a paused run's image batch is looked at again."""


def process_batch(campaign: str, refs: list[dict[str, Any]], run: int = 1) -> dict[str, int]:
    """Fetch, hash, match and record one batch of ``{"url", "page"}`` image references
    found by run ``run`` of the campaign (batches queued before runs existed: run 1)."""
    ctx = get_context()
    control = ctx.redis.get(keys.run_control(campaign, run))
    if control == b"cancelled":  # an operator cancelled the run: its images are dropped
        st.Stats(ctx.redis, campaign, run).inc(st.IMAGES_CANCELLED, len(refs))
        return {st.IMAGES_CANCELLED: len(refs)}
    if control == b"paused":  # asked again later, without fetching anything meanwhile
        _later(ctx, campaign, refs, run, PAUSED_RECHECK, "run paused")
        return {"paused": len(refs)}
    ctx.refresh_if_stale()
    assert ctx.matcher is not None
    campaign_id = ctx.campaign_id(campaign)
    urls = list(dict.fromkeys(str(r["url"]) for r in refs))
    pages = {str(r["url"]): r.get("page") for r in refs}
    attempts = {str(r["url"]): int(r.get("attempt", 0)) for r in refs}

    outcomes: list[ImageOutcome] = []
    timings = latency.BatchTimings()
    for res, hashes in asyncio.run(_fetch_and_hash(ctx, urls, timings)):
        if res.error not in NOT_TRIED:  # a put-off URL was never asked for
            timings.fetch.append(res.elapsed)
        outcome = ImageOutcome(
            image_url=res.url,
            page_url=pages.get(res.url),
            host=host_of(res.url)[:255],
            http_status=res.status,
            server_ip=res.server_ip,
            content_type=res.content_type,
            headers=res.headers,
            error=res.error,
            error_detail=res.detail,
        )
        if hashes is not None:
            outcome.hashes = hashes
            outcome.error, outcome.error_detail = hashes.error, hashes.error_detail
            outcome.decisions, outcome.near_misses = ctx.matcher.decide(hashes)
        outcomes.append(outcome)
    timings.record(ctx.redis)  # for /metrics: one round trip, never fails the batch

    # A flaky host (timeout, 5xx, 429) gets another try later instead of a permanent error
    # row: only URLs that failed transiently are re-queued, in a delayed batch of their own.
    retry = [
        o
        for o in outcomes
        if o.error in TRANSIENT_ERRORS
        and (o.error in NOT_TRIED or attempts[o.image_url] < ctx.settings.fetch_retries)
    ]
    if retry:
        outcomes = [o for o in outcomes if o not in retry]
        _schedule_refetch(ctx, campaign, retry, pages, attempts, run)

    counts = _record(ctx, campaign, campaign_id, outcomes, run)
    if retry:
        counts[st.FETCH_RETRY] += len(retry)
    st.Stats(ctx.redis, campaign, run).inc_many(counts)
    return dict(counts)


async def _fetch_and_hash(
    ctx: WorkerContext, urls: list[str], timings: latency.BatchTimings
) -> list[tuple[FetchResult, ImageHashes | None]]:
    """Fetch the batch and hash each image as soon as it is in, on one thread beside the
    fetching loop (decoding and numpy release the GIL): downloads overlap hashing instead
    of the whole batch downloading first. The bytes are dropped once hashed."""
    loop = asyncio.get_running_loop()
    settings = ctx.settings

    def hash_one(content: bytes) -> ImageHashes:
        with timings.hashing():
            return hash_image_bytes(
                content,
                max_pixels=settings.max_image_pixels,
                max_bytes=settings.fetch_max_bytes,
                reference=False,  # the fast path: see benchmarks/hashing.py
            )

    with ThreadPoolExecutor(1, thread_name_prefix="arachne-hash") as pool:

        async def hashed(res: FetchResult) -> tuple[FetchResult, ImageHashes | None]:
            if res.content is None:
                return res, None
            content, res.content = res.content, None
            return res, await loop.run_in_executor(pool, hash_one, content)

        return await fetch_then(urls, ctx.fetch_config(), hashed)


def process_inline(campaign: str, items: list[dict[str, Any]], run: int = 1) -> dict[str, int]:
    """Match and record images a spider found inline (``data:`` URIs) and hashed: the
    items carry hashes only. The page that embeds one is the host that serves it."""
    ctx = get_context()
    if ctx.redis.get(keys.run_control(campaign, run)) == b"cancelled":
        return {}
    ctx.refresh_if_stale()
    assert ctx.matcher is not None
    outcomes = []
    for item in items:
        hashes = hashes_from_json(item["hashes"])
        page = str(item["page"])
        outcomes.append(
            ImageOutcome(
                image_url=str(item["url"]),
                page_url=page,
                host=host_of(page)[:255],
                hashes=hashes,
                error=hashes.error,
                error_detail=hashes.error_detail,
                decisions=ctx.matcher.match(hashes),
            )
        )
    counts = _record(ctx, campaign, ctx.campaign_id(campaign), outcomes, run)
    st.Stats(ctx.redis, campaign, run).inc_many(counts)
    return dict(counts)


def _record(
    ctx: WorkerContext, campaign: str, campaign_id: int, outcomes: list[ImageOutcome], run: int
) -> Counter[str]:
    """Record the outcomes; the counters of those recorded now (not by an earlier
    delivery of the same job). Hosts with matches are told to the crawl (feedback.py)."""
    with ctx.store.session() as session:
        recorded = record_outcomes(session, campaign_id, outcomes, run=run)
    matched = [o for o in outcomes if o.decisions]
    if matched:
        hosts = [o.host for o in matched] + [host_of(o.page_url or "") for o in matched]
        RunFeedback(ctx.redis, campaign, run).matched(hosts)
    counts: Counter[str] = Counter()
    for o in outcomes:
        if o.image_url not in recorded:
            continue  # already recorded by an earlier delivery of this job
        counts[st.IMAGES_DONE] += 1
        if o.hashes is None:
            counts[st.FETCH_ERROR + (o.error or "unknown")] += 1
            continue
        counts[st.IMAGES_FETCHED] += 1
        if o.error:
            counts[st.HASH_ERROR + o.error] += 1
            continue
        counts[st.HASHED] += 1
        if (o.hashes.pdq_quality or 0) < ctx.settings.pdq_min_quality:
            counts[st.LOW_QUALITY] += 1
        if o.decisions:
            counts[st.IMAGES_MATCHED] += 1
            exact = any(d.kind == "exact" for d in o.decisions)
            counts[st.MATCH_EXACT if exact else st.MATCH_NEAR] += 1
    return counts


def notices_tick() -> dict[str, Any]:
    """Scheduled: re-checks and reminders that are due, then the next tick (schedule.py)."""
    from arachne.notices import schedule  # notices sit downstream of the queue: load late

    ctx = get_context()
    current = get_current_job()
    if current is not None and not schedule.owns_tick(ctx.redis, current.id):
        # A duplicate (its key expired while it waited behind busy workers and another
        # tick was scheduled): the owner does the work; this one ends here.
        return {"skipped": "not the scheduled tick"}
    try:
        ctx.refresh_if_stale()
        return schedule.run_due(ctx.store, ctx.settings, matcher=ctx.matcher)
    finally:
        # Only the chain that owns the tick key goes on; a stray duplicate ends here.
        if current is None or schedule.release_tick(ctx.redis, current.id):
            schedule.ensure_tick(ctx.redis, ctx.settings)
