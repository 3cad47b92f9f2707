"""Re-checks and reminders on their own schedule while workers run: no cron needed.

A tick is an rq job on the notices queue (workers listen to it after the image queues). Each
tick re-checks what is due, sends the reminders that are due and retries queued deliveries,
then schedules the next tick in ``notices_tick_interval`` seconds through rq's scheduler.
A Redis key names the one scheduled tick: whoever schedules a tick must win it (SET NX),
and a tick reschedules only if it still owns it, so one chain runs however many workers
start; a chain lost with a killed worker is restarted by the next worker's maintenance.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from arachne.errors import ConfigError
from arachne.matcher.match import Matcher
from arachne.notices.contacts import ContactResolver
from arachne.notices.deliver import Notifier
from arachne.notices.incidents import LOCK
from arachne.notices.recheck import FetchFn, recheck_incidents
from arachne.notices.render import sender_identity
from arachne.notices.send import send_notices
from arachne.queue import keys
from arachne.queue.fetch import fetch_many
from arachne.settings import Settings
from arachne.store.db import Store

log = logging.getLogger(__name__)

TICK_FUNC = "arachne.queue.jobs.notices_tick"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def notices_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(f"{settings.queue_name}-notices", connection=redis, serializer=JSONSerializer)


def ensure_tick(redis: Redis, settings: Settings, delay: float | None = None) -> str | None:
    """Schedule the next tick unless one is scheduled; returns its job id when it did."""
    job_id = f"notices-tick-{uuid.uuid4().hex[:12]}"
    # Outlives the wait and the tick itself; then a dead chain may be replaced.
    ttl = settings.notices_tick_interval * 3 + settings.job_timeout
    if not redis.set(keys.notices_tick(), job_id, nx=True, ex=ttl):
        return None
    notices_queue(redis, settings).enqueue_in(
        timedelta(seconds=settings.notices_tick_interval if delay is None else delay),
        TICK_FUNC,
        job_id=job_id,
        job_timeout=settings.job_timeout,
        result_ttl=600,
        failure_ttl=7 * 86400,
        description="notices: re-checks and reminders that are due",
    )
    return job_id


def owns_tick(redis: Redis, job_id: str) -> bool:
    """Whether this tick job is the one the tick key names (a stray duplicate is not)."""
    value = redis.get(keys.notices_tick())
    return value is not None and value.decode() == job_id


def release_tick(redis: Redis, job_id: str) -> bool:
    """Give up the tick key if this job still owns it (atomic compare-and-delete)."""
    return bool(redis.eval(_RELEASE, 1, keys.notices_tick(), job_id))


def run_due(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    matcher: Matcher | None = None,
    notifier: Notifier | None = None,
    resolver: ContactResolver | None = None,
    fetch: FetchFn = fetch_many,
) -> dict[str, Any]:
    """One tick: re-checks due now, then reminders due now and queued retries. Skipped
    (``{"busy": true}``) while another run holds the notices lock: it is doing this work."""
    when = now or datetime.now(UTC)
    with store.exclusive(LOCK, wait=False) as held:
        if not held:
            return {"at": when.isoformat(), "busy": True}
        return _run_due(store, settings, when, matcher, notifier, resolver, fetch)


def _run_due(
    store: Store,
    settings: Settings,
    when: datetime,
    matcher: Matcher | None,
    notifier: Notifier | None,
    resolver: ContactResolver | None,
    fetch: FetchFn,
) -> dict[str, Any]:
    rechecked = recheck_incidents(
        store, settings, None, now=when, matcher=matcher, fetch=fetch, due_only=True, lock=False
    )
    result: dict[str, Any] = {"at": when.isoformat(), "recheck": rechecked.as_json()}
    try:
        sender_identity(settings, preview=bool(getattr(notifier, "preview", False)))
    except ConfigError as exc:
        # Re-checks still run; reminders wait until the operator configures a sender.
        log.warning("reminders not sent: %s", exc)
        result["notices"] = {"skipped": str(exc)}
        return result
    sent = send_notices(
        store,
        settings,
        None,
        notifier=notifier,
        resolver=resolver,
        now=when,
        respect_backoff=True,
        first_notices=False,
        lock=False,
    )
    result["notices"] = sent.as_json()
    return result
