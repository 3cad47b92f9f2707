"""Live counters in Redis: the one place stats are counted.

Keys are slash-separated like Scrapy's (``fetch/status/404``, ``match/kind/near``). Each
increment also lands in a per-minute bucket so the dashboard can draw throughput.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping

from redis import Redis
from redis.exceptions import RedisError

from arachne.queue import keys

# Well-known keys (others are built from these prefixes).
PAGES_CRAWLED = "crawl/pages"
PAGES_ERRORS = "crawl/errors"
PAGE_ERROR = "crawl/error/"  # + reason (http_404, TimeoutError, ...)
IMAGES_FOUND = "crawl/images_found"
IMAGES_QUEUED = "queue/images_queued"
IMAGES_DUPLICATE = "queue/images_duplicate"
JOBS_QUEUED = "queue/jobs"
IMAGES_FETCHED = "fetch/ok"
FETCH_ERROR = "fetch/error/"  # + reason
FETCH_RETRY = "fetch/retry"  # transient failures sent back for a later try
HASHED = "hash/ok"
HASH_ERROR = "hash/error/"  # + reason
LOW_QUALITY = "hash/low_quality"
MATCH_EXACT = "match/kind/exact"
MATCH_NEAR = "match/kind/near"
IMAGES_MATCHED = "match/images"
IMAGES_DONE = "images/done"  # sightings recorded (ok or error)
IMAGES_CANCELLED = "queue/images_cancelled"  # dropped: their run was cancelled

TIMELINE_STATS = (PAGES_CRAWLED, IMAGES_QUEUED, IMAGES_FETCHED, HASHED, IMAGES_MATCHED)
TIMELINE_TTL = 7 * 24 * 3600
#: 2-second buckets for the last hours, so a 20-second demo draws a curve, not three points.
FINE_SECONDS = 2
FINE_TTL = 2 * 3600


class Stats:
    """Counters of a campaign (all runs) and, given ``run``, of that run as well."""

    def __init__(self, redis: Redis, campaign: str, run: int | None = None) -> None:
        self.redis = redis
        self.campaign = campaign
        self.run = run

    def inc_many(self, counts: Mapping[str, int]) -> None:
        counts = {k: v for k, v in counts.items() if v}
        if not counts:
            return
        now = time.time()
        minute, tick = int(now // 60), int(now // FINE_SECONDS)
        fine = keys.campaign_timeline_fine(self.campaign, int(now // 3600))
        pipe = self.redis.pipeline(transaction=False)
        for key, n in counts.items():
            pipe.hincrby(keys.campaign_stats(self.campaign), key, n)
            if self.run is not None:
                pipe.hincrby(keys.run_stats(self.campaign, self.run), key, n)
            if key in TIMELINE_STATS:
                pipe.hincrby(keys.campaign_timeline(self.campaign), f"{minute}/{key}", n)
                pipe.hincrby(fine, f"{tick}/{key}", n)
        pipe.expire(keys.campaign_timeline(self.campaign), TIMELINE_TTL)
        pipe.expire(fine, FINE_TTL)  # no-op when nothing was written to it
        pipe.execute()

    def inc(self, key: str, n: int = 1) -> None:
        self.inc_many({key: n})

    def get_all(self) -> dict[str, int]:
        """The campaign's counters over every run."""
        raw = self.redis.hgetall(keys.campaign_stats(self.campaign))
        return {_s(k): int(v) for k, v in raw.items()}

    def get_run(self, run: int) -> dict[str, int]:
        raw = self.redis.hgetall(keys.run_stats(self.campaign, run))
        return {_s(k): int(v) for k, v in raw.items()}

    def timeline(self) -> dict[int, dict[str, int]]:
        """{unix_minute: {stat: count}} for the charts."""
        out: dict[int, dict[str, int]] = {}
        for field, value in self.redis.hgetall(keys.campaign_timeline(self.campaign)).items():
            minute, _, stat = _s(field).partition("/")
            out.setdefault(int(minute), {})[stat] = int(value)
        return dict(sorted(out.items()))


def run_reader(redis: Redis | None, campaign: str) -> Callable[[int], dict[str, int] | None]:
    """``number -> that run's live counters``; None where Redis has none, is not there or
    does not answer (callers then show the run's stored snapshot)."""

    def read(number: int) -> dict[str, int] | None:
        if redis is None:
            return None
        try:
            return Stats(redis, campaign).get_run(number) or None
        except (RedisError, OSError):
            return None

    return read


def errors_by_reason(
    stats: Mapping[str, int], prefixes: tuple[str, ...] = (FETCH_ERROR, HASH_ERROR)
) -> dict[str, int]:
    """Fold ``fetch/error/*`` and ``hash/error/*`` (or other prefixes) into {reason: count}."""
    out: Counter[str] = Counter()
    for key, value in stats.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                out[key[len(prefix) :]] += value
    return dict(out)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
