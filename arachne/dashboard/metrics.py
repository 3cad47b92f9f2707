"""Prometheus ``/metrics``: queue, workers, crawl counters, latencies and the store's figures.

Each scrape reads everything once, in a worker thread, and hands fixed metric families to a
fresh registry: nothing is kept between scrapes (workers count into Redis and the store, not
into this process). A value that cannot be read is absent, never 0: with Redis down the
live families (queues, workers, Redis counters, latencies) disappear and ``arachne_live_up``
is 0, while the store's families (hashed, matches, notices, index size) remain. Counter
families are named without ``_total``: prometheus-client appends it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from arachne.dashboard import views
from arachne.matcher.lists import HASH_KINDS
from arachne.queue import keys, latency
from arachne.queue import stats as st
from arachne.queue.connection import image_queues
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import Campaign, HashEntry, HashList, Match, Notice, Sighting

log = logging.getLogger(__name__)

#: Redis counters exposed per campaign: (name without _total, help, stats key).
CAMPAIGN_COUNTERS = (
    ("arachne_pages_crawled", "Pages crawled.", st.PAGES_CRAWLED),
    ("arachne_images_queued", "Image URLs queued for fetching.", st.IMAGES_QUEUED),
    ("arachne_images_fetched", "Images fetched.", st.IMAGES_FETCHED),
    ("arachne_fetch_retries", "Image URLs sent back for a later fetch.", st.FETCH_RETRY),
)
#: Redis error counters per campaign and reason: (name, help, stats key prefix).
ERROR_COUNTERS = (
    ("arachne_fetch_errors", "Image fetches that failed, by reason.", st.FETCH_ERROR),
    ("arachne_hash_errors", "Fetched images that could not be hashed, by reason.", st.HASH_ERROR),
    ("arachne_page_errors", "Pages that could not be crawled, by reason.", st.PAGE_ERROR),
)
LATENCIES = (
    ("fetch", "arachne_fetch_duration_seconds", "Time to fetch one image (errors included)."),
    ("hash", "arachne_hash_duration_seconds", "Time to hash one fetched image."),
)
WORKER_STATES = ("busy", "idle")  # always present, so "no busy worker" reads 0


# -- the store (the system of record) ---------------------------------------------------


def store_families(session: Session) -> tuple[list[Metric], dict[str, dict[str, int]]]:
    """Store families, and each campaign's saved counter snapshot (by name)."""
    rows = session.execute(
        select(Campaign.id, Campaign.name, Campaign.stats).order_by(Campaign.name)
    ).all()
    campaigns = {cid: name for cid, name, _ in rows}
    snapshots = {name: dict(stats or {}) for _, name, stats in rows}
    hashed = CounterMetricFamily(
        "arachne_images_hashed", "Image URLs recorded with a hash.", labels=["campaign"]
    )
    counts = _by_campaign(
        session,
        select(Sighting.campaign_id, func.count())
        .where(Sighting.image_id.is_not(None), Sighting.error.is_(None))
        .group_by(Sighting.campaign_id),
    )
    for cid, name in campaigns.items():
        hashed.add_metric([name], counts.get(cid, 0))

    # A URL is "exact" if any exact match exists for it, else "near" (as campaign_summary).
    matched = _by_campaign(
        session,
        select(Match.campaign_id, func.count(distinct(Match.sighting_id))).group_by(
            Match.campaign_id
        ),
    )
    exact = _by_campaign(
        session,
        select(Match.campaign_id, func.count(distinct(Match.sighting_id)))
        .where(Match.kind == "exact")
        .group_by(Match.campaign_id),
    )
    matches = CounterMetricFamily(
        "arachne_matches", "Matched image URLs by match kind.", labels=["campaign", "kind"]
    )
    for cid, name in campaigns.items():
        matches.add_metric([name, "exact"], exact.get(cid, 0))
        matches.add_metric([name, "near"], matched.get(cid, 0) - exact.get(cid, 0))

    notices = CounterMetricFamily(
        "arachne_notices", "Notices by status.", labels=["campaign", "status"]
    )
    rows = session.execute(
        select(Notice.campaign_id, Notice.status, func.count())
        .where(Notice.campaign_id.is_not(None))
        .group_by(Notice.campaign_id, Notice.status)
        .order_by(Notice.campaign_id, Notice.status)
    )
    for cid, status, n in rows:
        if cid in campaigns:
            notices.add_metric([campaigns[cid], status], n)

    # What the workers load: every entry not retracted (store.hashlists.active_entries).
    index = GaugeMetricFamily(
        "arachne_index_entries", "Known hashes in the match index, by kind.", labels=["kind"]
    )
    rows = session.execute(
        select(HashEntry.kind, func.count())
        .join(HashList, HashList.id == HashEntry.list_id)
        .where(HashEntry.deleted_at.is_(None))
        .group_by(HashEntry.kind)
    )
    by_kind = dict.fromkeys(HASH_KINDS, 0) | {kind: int(n) for kind, n in rows}
    for kind, n in sorted(by_kind.items()):  # every kind, so an empty index reads 0
        index.add_metric([kind], n)
    return [hashed, matches, notices, index], snapshots


def _by_campaign(session: Session, stmt: Any) -> dict[int, int]:
    return {cid: int(n) for cid, n in session.execute(stmt).all()}


# -- Redis (live) ---------------------------------------------------------------------


def live_families(
    redis: Redis, settings: Settings, snapshots: Mapping[str, Mapping[str, int]]
) -> list[Metric]:
    """Queue, worker, counter and latency families; raises RedisError/OSError."""
    from arachne.notices.schedule import notices_queue  # the notices sit downstream

    queues = image_queues(redis, settings)
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue.key)
        # Bare ZCARDs: rq's ``count`` cleans the registries up, and a scrape must not write.
        pipe.zcard(FailedJobRegistry(queue=queue).key)
        pipe.zcard(ScheduledJobRegistry(queue=queue).key)
        pipe.zcard(StartedJobRegistry(queue=queue).key)
        pipe.llen(queue.intermediate_queue_key)  # dequeued, not yet registered: running
    notices = notices_queue(redis, settings)
    pipe.llen(notices.key)
    figures = [int(n) for n in pipe.execute()]

    depth = GaugeMetricFamily("arachne_queue_depth", "Jobs waiting in a queue.", labels=["queue"])
    failed = GaugeMetricFamily(
        "arachne_batches_failed", "Image batches in rq's failed registry.", labels=["queue"]
    )
    retrying = GaugeMetricFamily(
        "arachne_batches_retrying",
        "Image batches scheduled to run again (rq retries, re-fetches, paused runs).",
        labels=["queue"],
    )
    running = GaugeMetricFamily(
        "arachne_batches_running", "Image batches being processed.", labels=["queue"]
    )
    for i, queue in enumerate(queues):
        waiting, n_failed, scheduled, started, intermediate = figures[5 * i : 5 * i + 5]
        depth.add_metric([queue.name], waiting)
        failed.add_metric([queue.name], n_failed)
        retrying.add_metric([queue.name], scheduled)
        running.add_metric([queue.name], started + intermediate)
    depth.add_metric([notices.name], figures[-1])

    return [
        depth,
        failed,
        retrying,
        running,
        _workers(redis),
        *_campaign_counters(redis, snapshots),
        *_latencies(redis),
    ]


def _workers(redis: Redis) -> Metric:
    by_state = dict.fromkeys(WORKER_STATES, 0)
    # Worker.all lists only workers whose heart-beat key is alive: dead ones expire.
    for worker in Worker.all(connection=redis):
        state = worker.get_state()
        state = str(getattr(state, "value", state))  # a WorkerStatus, or its text
        by_state[state] = by_state.get(state, 0) + 1
    family = GaugeMetricFamily("arachne_workers", "rq workers alive, by state.", labels=["state"])
    for state, n in sorted(by_state.items()):
        family.add_metric([state], n)
    return family


def _campaign_counters(
    redis: Redis, snapshots: Mapping[str, Mapping[str, int]]
) -> Iterator[Metric]:
    names = sorted(snapshots)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.campaign_stats(name))
    counters: dict[str, dict[str, int]] = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        live = {_s(k): int(v) for k, v in raw.items()}
        # An empty live hash: the saved snapshot stands in, as on the dashboard.
        counters[name] = live or dict(snapshots[name])

    for metric, help_, key in CAMPAIGN_COUNTERS:
        family = CounterMetricFamily(metric, help_, labels=["campaign"])
        for name in names:
            family.add_metric([name], counters[name].get(key, 0))
        yield family
    for metric, help_, prefix in ERROR_COUNTERS:
        family = CounterMetricFamily(metric, help_, labels=["campaign", "reason"])
        for name in names:
            by_reason = st.errors_by_reason(counters[name], (prefix,))
            for reason, n in sorted(by_reason.items()):
                family.add_metric([name, reason], n)
        yield family


def _latencies(redis: Redis) -> Iterator[Metric]:
    histograms = latency.read(redis, [stage for stage, _, _ in LATENCIES])
    for stage, metric, help_ in LATENCIES:
        hist = histograms[stage]
        yield HistogramMetricFamily(metric, help_, buckets=hist.buckets, sum_value=hist.sum)


# -- one scrape -----------------------------------------------------------------------


def collect(store: Store, live: views.LiveSource) -> list[Metric]:
    """Every family of one scrape (blocking: run in a thread)."""
    with store.session() as session:
        families, snapshots = store_families(session)
    up = GaugeMetricFamily("arachne_live_up", "1 if live counters (Redis) are readable.")
    redis = live._client()
    live_part: list[Metric] = []
    if redis is not None:
        try:
            live_part = live_families(redis, live.settings, snapshots)
        except (RedisError, OSError) as exc:
            log.warning("live metrics unavailable: %s", exc)
            if not live.settings.redis_url:
                live.close()  # an embedded Valkey may come back on another port
            redis = None
    up.add_metric([], 1 if redis is not None else 0)
    return [up, *live_part, *families]


class _Fixed(Collector):
    """Hands out families already read: the registry only formats them."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def exposition(families: Iterable[Metric]) -> bytes:
    """The text exposition of these families (a fresh registry per scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def read_metrics(store: Store, live: views.LiveSource) -> bytes:
    return exposition(collect(store, live))


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` (auth, or the operator's opt-out, is the middleware's)."""
    body = await views._read(request, read_metrics, request.app[views.LIVE])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/metrics", metrics, name="metrics")


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
