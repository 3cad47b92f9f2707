"""Fetch and hash latency histograms, kept in Redis for `/metrics`.

Workers are separate processes, and rq forks a short-lived work horse per batch: an
in-process Prometheus histogram would die with each fork. So a batch collects its timings
locally and adds them to one Redis hash per stage in a single pipelined round trip; the
dashboard reads the hashes back as cumulative buckets.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError

from arachne.queue import keys

log = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds in seconds; one more, +Inf, takes everything slower."""
STAGES = ("fetch", "hash")
INF = "+Inf"
SUM = "sum"


def latency_key(stage: str) -> str:
    """HASH of one stage's histogram: field per bucket bound (non-cumulative count), plus
    ``sum`` (seconds, float)."""
    return f"{keys.PREFIX}:latency:{stage}"


def _bound(upper: float) -> str:
    return str(upper)  # "0.005", "1.0": the label Prometheus writes for these bounds


BOUNDS = (*(_bound(b) for b in BUCKETS), INF)


@dataclass(frozen=True)
class Histogram:
    """One stage read back: cumulative ``(le, count)`` pairs ending with +Inf, and the sum."""

    buckets: list[tuple[str, int]]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1]


def bucket_counts(seconds: Iterable[float]) -> tuple[Counter[str], float]:
    """Per-bucket (non-cumulative) counts of these timings, and their sum."""
    counts: Counter[str] = Counter()
    total = 0.0
    for value in seconds:
        counts[BOUNDS[bisect_left(BUCKETS, value)]] += 1  # le: value <= bound
        total += value
    return counts, total


def record(redis: Redis, timings: Mapping[str, Iterable[float]]) -> None:
    """Add each stage's timings to its histogram: one round trip for the whole batch.

    Losing a batch's timings is better than failing its job, so Redis errors are logged.
    """
    pipe = redis.pipeline(transaction=False)
    for stage, seconds in timings.items():
        counts, total = bucket_counts(seconds)
        if not counts:
            continue
        key = latency_key(stage)
        for bound, n in counts.items():
            pipe.hincrby(key, bound, n)
        pipe.hincrbyfloat(key, SUM, total)
    if not len(pipe):
        return
    try:
        pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("could not record latencies: %s", exc)


def read(redis: Redis, stages: Iterable[str] = STAGES) -> dict[str, Histogram]:
    """Every stage's histogram (zero counts where nothing was recorded); one round trip.
    Raises RedisError/OSError: an unreadable histogram is unknown, not empty."""
    stages = list(stages)
    pipe = redis.pipeline(transaction=False)
    for stage in stages:
        pipe.hgetall(latency_key(stage))
    out: dict[str, Histogram] = {}
    for stage, raw in zip(stages, pipe.execute(), strict=True):
        fields = {_s(k): _s(v) for k, v in raw.items()}
        running = 0
        cumulative = []
        for bound in BOUNDS:
            running += int(fields.get(bound, 0))
            cumulative.append((bound, running))
        out[stage] = Histogram(cumulative, float(fields.get(SUM, 0.0)))
    return out


@dataclass
class BatchTimings:
    """One batch's timings, recorded together when the batch is done."""

    fetch: list[float] = field(default_factory=list)
    hash: list[float] = field(default_factory=list)

    @contextmanager
    def hashing(self) -> Iterator[None]:
        """Time one hash (runs on the hashing thread: list.append is atomic)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.hash.append(time.perf_counter() - started)

    def record(self, redis: Redis) -> None:
        record(redis, {"fetch": self.fetch, "hash": self.hash})


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
