"""Re-checks: is the content still up? Fetched like the workers fetch, and re-hashed.

Removed means: 404, 410 or 451; the name no longer resolves (NXDOMAIN); or what the URL
serves now no longer matches its list entries (a soft-404 page, a placeholder picture, a
broken file). Timeouts, 5xx, 401/403 and refused connections may pass, so they count as
removed only after ``recheck_failures_removed`` checks in a row, dated from the first.
A removed URL is watched a while longer (incidents.WATCH_CHECKS) in case it comes back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import ConfigError
from arachne.matcher.hashing import hash_image_bytes
from arachne.matcher.match import Matcher
from arachne.notices import incidents as inc_mod
from arachne.queue.connection import redis_from_settings
from arachne.queue.fetch import FetchConfig, FetchResult, fetch_many
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.hashlists import active_entries
from arachne.store.models import Incident, Recheck
from arachne.store.summary import get_campaign

FetchFn = Callable[[Sequence[str], FetchConfig], Awaitable[list[FetchResult]]]
GONE_STATUSES = frozenset({404, 410, 451})
GONE_ERRORS = frozenset({"nxdomain"})
# Content no longer what was matched: a soft 404 (HTML with 200), a broken or empty file.
CHANGED_ERRORS = frozenset({"not_an_image", "empty"})
# Not an answer about the content: never counts either way.
NEUTRAL_ERRORS = frozenset({"blocked_address", "host_busy"})
"""Says nothing about the content: a refused address, or a host we did not ask (paced)."""
CHUNK = 100
"""URLs fetched and recorded together: a long re-check run commits as it goes."""


@dataclass(frozen=True)
class Verdict:
    outcome: str  # up | gone | changed | unreachable | error
    reason: str | None
    http_status: int | None
    detail: str | None = None


@dataclass
class RecheckReport:
    checked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # up/removed/unreachable/...
    results: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"checked": self.checked, **dict(self.outcomes), "urls": self.results}


def classify(res: FetchResult, matcher: Matcher, settings: Settings) -> Verdict:
    """What one fetch says about the content (bytes are hashed in memory and dropped)."""
    if res.status in GONE_STATUSES:
        return Verdict("gone", f"http_{res.status}", res.status)
    if res.error in GONE_ERRORS:
        return Verdict("gone", res.error, res.status, res.detail)
    if res.error in CHANGED_ERRORS:
        return Verdict("changed", res.error, res.status, res.detail)
    if res.error in NEUTRAL_ERRORS:
        return Verdict("error", res.error, res.status, res.detail)
    if res.content is None:
        return Verdict("unreachable", res.error or "no_content", res.status, res.detail)
    hashes = hash_image_bytes(
        res.content,
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.fetch_max_bytes,
        reference=False,
    )
    res.content = None
    if matcher.match(hashes):
        return Verdict("up", None, res.status)
    reason = "changed" if hashes.error is None else f"changed:{hashes.error}"
    return Verdict("changed", reason, res.status, hashes.error_detail)


def due_for_check(
    session: Session,
    now: datetime,
    campaign_id: int | None,
    *,
    due_only: bool,
    limit: int | None = None,
) -> list[Incident]:
    stmt = select(Incident)
    if campaign_id is not None:
        stmt = stmt.where(Incident.campaign_id == campaign_id)
    if due_only:  # the most overdue first; the rest wait for the next run
        stmt = stmt.where(
            Incident.state.in_((*inc_mod.ACTIVE_STATES, inc_mod.REMOVED)),
            Incident.next_check_at.is_not(None),
            Incident.next_check_at <= now,
        ).order_by(Incident.next_check_at, Incident.id)
    else:  # an operator's "re-check every open URL now"
        stmt = stmt.where(Incident.state.in_(inc_mod.ACTIVE_STATES)).order_by(Incident.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def recheck_incidents(
    store: Store,
    settings: Settings,
    campaign_name: str | None = None,
    *,
    now: datetime | None = None,
    due_only: bool = True,
    matcher: Matcher | None = None,
    fetch: FetchFn = fetch_many,
    lock: bool = True,
) -> RecheckReport:
    """Re-check incidents (the due ones, at most ``recheck_batch``; or every open one) and
    record what each showed, a chunk at a time so a long run keeps what it learned."""
    when = now or datetime.now(UTC)
    with store.exclusive(inc_mod.LOCK) if lock else nullcontext(True):
        with store.session() as session:
            campaign_id = get_campaign(session, campaign_name).id if campaign_name else None
            limit = settings.recheck_batch if due_only else None
            incidents = due_for_check(session, when, campaign_id, due_only=due_only, limit=limit)
            wanted = {e for inc in incidents for e in (inc.entry_ids or [])}
            rows = list(active_entries(session, ids=wanted))
        listed = {row[0] for row in rows}
        if matcher is None:
            # "Still up" means it still matches its own list entries (a worker passes its
            # full index instead, so a swap for other known material counts as up too).
            matcher = Matcher(
                rows,
                default_threshold=settings.pdq_threshold,
                min_quality=settings.pdq_min_quality,
            )
        report = RecheckReport()
        config = FetchConfig.from_settings(settings, _politeness_redis(settings))
        for start in range(0, len(incidents), CHUNK):
            chunk = incidents[start : start + CHUNK]
            _check_chunk(store, settings, chunk, listed, matcher, fetch, config, when, report)
        return report


def _politeness_redis(settings: Settings) -> Redis | None:
    """The Redis holding the cluster's per-host slots, so re-checks are as polite as the
    workers; None where none runs (a re-check from the CLI on a stopped machine)."""
    try:
        return redis_from_settings(settings)
    except ConfigError:
        return None


def _check_chunk(
    store: Store,
    settings: Settings,
    chunk: list[Incident],
    listed: set[int],
    matcher: Matcher,
    fetch: FetchFn,
    config: FetchConfig,
    when: datetime,
    report: RecheckReport,
) -> None:
    # An incident whose list entries were all retracted is no longer known material: it
    # is closed as such, not counted as a removal.
    retracted = {inc.id for inc in chunk if not set(inc.entry_ids or []) & listed}
    urls = list(dict.fromkeys(inc.url for inc in chunk if inc.id not in retracted))
    fetched = {r.url: r for r in asyncio.run(fetch(urls, config))} if urls else {}
    verdicts = {url: classify(fetched[url], matcher, settings) for url in urls}
    with store.session() as session:
        for stale in chunk:
            inc = session.get_one(Incident, stale.id)
            if inc.id in retracted:
                verdict = Verdict("retracted", "entries_retracted", None)
                outcome = inc_mod.retract(inc, when)
            else:
                verdict = verdicts[inc.url]
                outcome = apply_verdict(inc, verdict, settings, when)
            session.add(
                Recheck(
                    incident_id=inc.id,
                    url=inc.url,
                    checked_at=when,
                    outcome=outcome,
                    reason=verdict.reason,
                    http_status=verdict.http_status,
                    detail=(verdict.detail or "")[:2000] or None,
                )
            )
            report.checked += 1
            report.outcomes[outcome] += 1
            report.results.append(
                {
                    "url": inc.url,
                    "host": inc.host,
                    "outcome": outcome,
                    "reason": verdict.reason,
                    "http_status": verdict.http_status,
                    "state": inc.state,
                    "time_to_removal_seconds": inc.removal_seconds,
                }
            )


def apply_verdict(inc: Incident, verdict: Verdict, settings: Settings, now: datetime) -> str:
    """Move the incident on; returns the re-check's outcome as recorded."""
    inc.last_checked_at = now
    inc.updated_at = now
    if inc.state == inc_mod.REMOVED:
        if verdict.outcome == "up":
            inc_mod.reopen(inc, settings, now)
            return "reappeared"
        spacing = settings.recheck_interval * inc_mod.WATCH_SPACING
        watching = not inc_mod.watch_over(inc, settings, now)
        inc.next_check_at = now + timedelta(seconds=spacing) if watching else None
        return "still_removed"

    inc.next_check_at = now + timedelta(seconds=settings.recheck_interval)
    if verdict.outcome == "up":
        inc.failures, inc.first_failure_at = 0, None
        return "up"
    if verdict.outcome in ("gone", "changed"):
        inc_mod.mark_removed(inc, now, verdict.reason or verdict.outcome, settings, now)
        return "removed"
    if verdict.outcome == "unreachable":
        inc.failures += 1
        inc.first_failure_at = inc.first_failure_at or now
        if inc.failures >= settings.recheck_failures_removed:
            # Down for N checks in a row: removed as of the first of them.
            reason = f"unreachable:{verdict.reason}"
            inc_mod.mark_removed(inc, inc.first_failure_at, reason, settings, now)
            return "removed"
        return "unreachable"
    return "error"
