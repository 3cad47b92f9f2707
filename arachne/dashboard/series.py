"""Live figures from Redis for the dashboard: crawl progress over time, rates, queues, rq.

Stats keeps a per-minute timeline for a week (``{unix_minute}/{stat}``). A week-long
campaign is drawn per hour, a day per 5 or 15 minutes, an hour per minute. A 20-second demo
needs finer buckets than a minute: Stats also keeps 2-second buckets for the last hours
(``keys.campaign_timeline_fine``), and short spans use those. Every function here takes a
Redis client and may raise RedisError/OSError; callers decide what "unreachable" shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from arachne.queue import keys
from arachne.queue import stats as st
from arachne.queue.connection import PRIORITIES, image_queues
from arachne.settings import Settings

#: (JSON key, stats key, label, colour) of each line of the campaign charts.
SERIES = (
    ("pages", st.PAGES_CRAWLED, "pages crawled", "#4e79a7"),
    ("discovered", st.IMAGES_QUEUED, "images discovered", "#f28e2b"),
    ("fetched", st.IMAGES_FETCHED, "images fetched", "#59a14f"),
    ("hashed", st.HASHED, "images hashed", "#b07aa1"),
    ("matched", st.IMAGES_MATCHED, "images matched", "#e15759"),
)
#: Bucket sizes by name; "auto" picks the finest that keeps a chart under MAX_POINTS.
RESOLUTIONS = {
    "2s": 2, "10s": 10, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400,
}  # fmt: skip
MAX_POINTS = 400
#: An explicit fine resolution over a long span keeps its newest buckets only.
HARD_CAP = 5000
FINE_SECONDS = st.FINE_SECONDS
#: Hours of fine buckets read back (Stats keeps one hash per hour, for two hours).
FINE_HOURS = 2
#: The live rates average this many seconds of fine buckets (the current one included).
RATE_WINDOW = 30


class BadResolution(ValueError):
    pass


def read_timelines(
    redis: Redis, campaign: str, now: float
) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """(per-minute, per-fine-bucket) counters keyed by bucket start in unix seconds."""
    minutes = {m * 60: v for m, v in st.Stats(redis, campaign).timeline().items()}
    fine: dict[int, dict[str, int]] = {}
    hour = int(now // 3600)
    pipe = redis.pipeline(transaction=False)
    for h in range(hour - FINE_HOURS + 1, hour + 1):
        pipe.hgetall(keys.campaign_timeline_fine(campaign, h))
    for raw in pipe.execute():
        for field, value in raw.items():
            tick, _, stat = _s(field).partition("/")
            fine.setdefault(int(tick) * FINE_SECONDS, {})[stat] = int(value)
    return minutes, fine


def build_series(
    minutes: Mapping[int, Mapping[str, int]],
    fine: Mapping[int, Mapping[str, int]],
    resolution: str = "auto",
    until: float | None = None,
) -> dict[str, Any]:
    """Bucket the timelines for uPlot: ``t`` (bucket starts, unix s) and one array a line.

    ``until`` (now, for a running campaign) extends the chart to the present so a stall
    shows as a flat line. One zero bucket leads, so progress rises from nothing.
    """
    if resolution != "auto" and resolution not in RESOLUTIONS:
        raise BadResolution(
            f"resolution must be auto or one of {', '.join(RESOLUTIONS)}, not {resolution!r}"
        )
    stamps = [*minutes, *fine]
    if not stamps:
        return _payload("1m" if resolution == "auto" else resolution, 60, [], {}, False)
    first = min(stamps)
    last = max(max(stamps), int(until) if until else 0)
    # Fine buckets stand in only if they reach back to the first minute with data.
    fine_covers = bool(fine) and min(fine) < (min(minutes) if minutes else first) + 60
    if resolution == "auto":
        sizes = sorted(RESOLUTIONS.values())
        if not fine_covers:
            sizes = [b for b in sizes if b >= 60]
        bucket = next((b for b in sizes if (last - first) / b <= MAX_POINTS), sizes[-1])
    else:
        bucket = RESOLUTIONS[resolution]
        if bucket < 60 and not fine:
            bucket = 60  # no fine buckets kept: the minute is the finest there is
    source = fine if bucket < 60 else minutes
    if not source:
        source = minutes or fine
    start = (min(source) // bucket - 1) * bucket  # the leading zero bucket
    end = last // bucket * bucket
    clipped = (end - start) // bucket + 1 > HARD_CAP
    if clipped:
        start = end - (HARD_CAP - 1) * bucket
    t = list(range(start, end + bucket, bucket))
    index = {ts: i for i, ts in enumerate(t)}
    counts = {key: [0] * len(t) for key, *_ in SERIES}
    for ts, values in source.items():
        i = index.get(ts // bucket * bucket)
        if i is None:
            continue
        for key, stat, *_ in SERIES:
            counts[key][i] += values.get(stat, 0)
    name = next(n for n, b in RESOLUTIONS.items() if b == bucket)
    return _payload(name, bucket, t, counts, clipped)


def _payload(
    name: str, bucket: int, t: list[int], counts: dict[str, list[int]], clipped: bool
) -> dict[str, Any]:
    series = []
    for key, _stat, label, colour in SERIES:
        values = counts.get(key, [])
        running, cumulative = 0, []
        for v in values:
            running += v
            cumulative.append(running)
        series.append(
            {
                "key": key,
                "label": label,
                "color": colour,
                "per_bucket": values,
                "cumulative": cumulative,
                "total": running,
            }
        )
    return {
        "resolution": name,
        "bucket_seconds": bucket,
        "clipped": clipped,
        "t": t,
        "series": series,
    }


def campaign_series(
    redis: Redis, campaign: str, resolution: str = "auto", running: bool = False
) -> dict[str, Any]:
    now = time.time()
    minutes, fine = read_timelines(redis, campaign, now)
    series = build_series(minutes, fine, resolution, now if running else None)
    return {"campaign": campaign, **series}


# -- now: rates, queues, rq -----------------------------------------------------------


def rates(redis: Redis, campaigns: list[str], now: float | None = None) -> dict[str, dict]:
    """Pages and images (fetched) per second for each campaign, over the last RATE_WINDOW
    seconds of fine buckets (the current, partly filled one included)."""
    now = time.time() if now is None else now
    wanted = (st.PAGES_CRAWLED, st.IMAGES_FETCHED)
    tick = int(now // FINE_SECONDS)
    buckets = range(tick - RATE_WINDOW // FINE_SECONDS + 1, tick + 1)
    elapsed = max(now - buckets[0] * FINE_SECONDS, 1.0)
    pipe = redis.pipeline(transaction=False)
    for name in campaigns:
        for bucket in buckets:
            key = keys.campaign_timeline_fine(name, bucket * FINE_SECONDS // 3600)
            pipe.hmget(key, [f"{bucket}/{s}" for s in wanted])
    values = iter(pipe.execute())
    out: dict[str, dict] = {}
    for name in campaigns:
        pages = images = 0
        for _ in buckets:
            got = next(values)
            pages += int(got[0] or 0)
            images += int(got[1] or 0)
        out[name] = {
            "pages_per_s": round(pages / elapsed, 2),
            "images_per_s": round(images / elapsed, 2),
        }
    return out


def queue_depths(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Jobs waiting in each image queue, highest priority first."""
    return [
        {"priority": p, "name": q.name, "depth": q.count}
        for p, q in zip(PRIORITIES, image_queues(redis, settings), strict=True)
    ]


@dataclass(frozen=True)
class RqSummary:
    workers: int
    busy: int
    running: int
    failed: int
    retrying: int


def rq_summary(redis: Redis, settings: Settings) -> RqSummary:
    """Workers alive and batches running, failed and waiting for a retry (every queue)."""
    alive = Worker.all(connection=redis, serializer=JSONSerializer)
    batches = image_queues(redis, settings)
    queues = _all_queues(redis, settings)
    return RqSummary(
        workers=len(alive),
        busy=sum(1 for w in alive if w.get_state() == "busy"),
        running=sum(StartedJobRegistry(queue=q).count for q in queues),
        failed=sum(FailedJobRegistry(queue=q).count for q in queues),
        # A failed batch with retries left waits here until its back-off is over (the
        # notices queue schedules its tick there too: not a retry, so left out).
        retrying=sum(ScheduledJobRegistry(queue=q).count for q in batches),
    )


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- rq: workers, failed jobs, requeue (the workers page) ---------------------------------

#: Failed jobs listed per queue, newest first.
FAILED_SHOWN = 200


def _all_queues(redis: Redis, settings: Settings) -> list[Queue]:
    from arachne.notices.schedule import notices_queue

    return [*image_queues(redis, settings), notices_queue(redis, settings)]


def workers(redis: Redis) -> list[dict[str, Any]]:
    """Every live rq worker: state, the batch it is on, last heartbeat."""
    out = []
    for w in Worker.all(connection=redis, serializer=JSONSerializer):
        job_id = w.get_current_job_id()
        job = _job(redis, job_id) if job_id else None
        out.append(
            {
                "name": w.name,
                "hostname": w.hostname,
                "pid": w.pid,
                "state": w.get_state(),
                "queues": w.queue_names(),
                "current_job": job_id,
                "current_batch": job.description if job else None,
                "last_heartbeat": _iso(w.last_heartbeat),
                "started_at": _iso(w.birth_date),
                "successful_jobs": w.successful_job_count,
                "failed_jobs": w.failed_job_count,
            }
        )
    return sorted(out, key=lambda w: w["name"])


def queue_table(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Per queue: waiting, running, failed and scheduled (retry back-off) jobs."""
    return [
        {
            "name": q.name,
            "waiting": q.count,
            "running": StartedJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
        }
        for q in _all_queues(redis, settings)
    ]


def failed_jobs(redis: Redis, settings: Settings, limit: int = FAILED_SHOWN) -> list[dict]:
    """Failed jobs of every queue, newest first, each with its error's last line."""
    out = []
    for q in _all_queues(redis, settings):
        ids = FailedJobRegistry(queue=q).get_job_ids(0, limit - 1, desc=True)
        for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer):
            if job is None:  # expired between the two reads
                continue
            result = job.latest_result()
            error = result.exc_string if result and result.type == Result.Type.FAILED else None
            out.append(
                {
                    "id": job.id,
                    "queue": q.name,
                    "description": job.description,
                    "campaign": _campaign_of(job),
                    "failed_at": _iso(job.ended_at),
                    "error": _last_line(error),
                    "retries_left": job.retries_left,
                }
            )
    return sorted(out, key=lambda j: j["failed_at"] or "", reverse=True)


def requeue(redis: Redis, settings: Settings, job_id: str) -> dict[str, Any]:
    """Put a failed job back on its queue; KeyError when no queue of ours has it failed."""
    for q in _all_queues(redis, settings):
        registry = FailedJobRegistry(queue=q)
        if redis.zscore(registry.key, job_id) is None:
            continue
        job = registry.requeue(job_id)
        return {"requeued": job.id, "queue": q.name, "description": job.description}
    raise KeyError(job_id)


def _job(redis: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def _campaign_of(job: Job) -> str | None:
    # Image batches take the campaign first; the notices tick takes nothing.
    try:
        args = job.args
    except Exception:  # a payload this version cannot read: still listed, still requeueable
        return None
    return args[0] if args and isinstance(args[0], str) else None


def _last_line(text: str | None) -> str | None:
    """The exception's own line ("ValueError: ...") from a traceback: the first line after
    the last frame; else the last line there is."""
    lines = [line.rstrip() for line in (text or "").splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = lines[frames[-1] + 1 :] if frames else []
    found = next((line for line in after if not line.startswith(" ")), None)
    found = found or (lines[-1].strip() if lines else None)
    return found[:500] if found else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
