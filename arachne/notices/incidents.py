"""Incidents: one matched URL over time, open -> noticed -> removed (or reappeared -> open).

An incident is opened for every matched image URL (whatever the campaign: a hotline
notices a URL once), moves to ``noticed`` when a notice covering it is accepted by the
recipient's server, and to ``removed`` when a re-check shows the content gone. Time to
removal is measured on it: from the first accepted notice to the first check that showed
removal, so its resolution is the re-check spacing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.settings import Settings
from arachne.store.models import (
    HashEntry,
    Image,
    Incident,
    Match,
    NoticeIncident,
    Sighting,
)
from arachne.urls import url_key

OPEN, NOTICED, REMOVED, RETRACTED = "open", "noticed", "removed", "retracted"
LOCK = "notices"
"""The store-wide lock every run that sends notices or re-checks incidents holds."""
ACTIVE_STATES = (OPEN, NOTICED)
WATCH_SPACING = 4
WATCH_CHECKS = 7
"""A removed URL is re-checked this many more times, every WATCH_SPACING re-check intervals
(daily for a week at the 6 h default), so content that comes back is noticed again."""


@dataclass(frozen=True)
class SyncReport:
    opened: int
    reappeared: int
    total: int


def sync_incidents(
    session: Session, settings: Settings, now: datetime, campaign_id: int | None = None
) -> SyncReport:
    """Open an incident for every matched URL that has none; reopen removed ones that a
    newer sighting matched again. Retracted list entries no longer count."""
    stmt = (
        select(
            Sighting.id,
            Sighting.image_url,
            Sighting.page_url,
            Sighting.host,
            Sighting.campaign_id,
            Sighting.fetched_at,
            Image.sha256,
            Image.pdq,
            Match.entry_id,
            Match.created_at,
        )
        .join(Match, Match.sighting_id == Sighting.id)
        .join(HashEntry, HashEntry.id == Match.entry_id)
        .outerjoin(Image, Image.id == Sighting.image_id)
        .where(HashEntry.deleted_at.is_(None))
        .order_by(Sighting.id)
    )
    if campaign_id is not None:
        stmt = stmt.where(Match.campaign_id == campaign_id)
    found: dict[str, dict[str, object]] = {}
    for sid, url, page, host, cid, fetched, sha256, pdq, entry_id, matched_at in session.execute(
        stmt
    ):
        key = url_key(url)
        row = found.setdefault(
            key,
            {
                "sighting_id": sid,
                "url": url,
                "page_url": page,
                "host": host,
                "campaign_id": cid,
                "fetched_at": fetched,
                "sha256": sha256,
                "pdq": pdq,
                "entries": set(),
                "matched_at": matched_at,
            },
        )
        row["entries"].add(entry_id)  # type: ignore[attr-defined]
        row["matched_at"] = min(row["matched_at"], matched_at)  # type: ignore[type-var]
        row["fetched_at"] = max(row["fetched_at"], fetched)  # type: ignore[type-var]

    existing: dict[str, Incident] = {}
    keys = list(found)
    for start in range(0, len(keys), 500):
        for inc in session.scalars(
            select(Incident).where(Incident.url_key.in_(keys[start : start + 500]))
        ):
            existing[inc.url_key] = inc

    opened = reappeared = 0
    for key, row in found.items():
        entries = sorted(row["entries"])  # type: ignore[call-overload]
        inc = existing.get(key)
        if inc is None:
            session.add(
                Incident(
                    campaign_id=row["campaign_id"],
                    host=row["host"],
                    url_key=key,
                    url=row["url"],
                    page_url=row["page_url"],
                    sighting_id=row["sighting_id"],
                    entry_ids=entries,
                    sha256=row["sha256"],
                    pdq=row["pdq"],
                    state=OPEN,
                    opened_at=row["matched_at"],
                    notices_sent=0,
                    failures=0,
                    reappeared=0,
                    next_check_at=now + timedelta(seconds=settings.recheck_interval),
                    updated_at=now,
                )
            )
            opened += 1
            continue
        if set(entries) - set(inc.entry_ids or []):
            inc.entry_ids = sorted(set(inc.entry_ids or []) | set(entries))
        fetched = row["fetched_at"]
        if inc.state == REMOVED and inc.removed_at and fetched > inc.removed_at:  # type: ignore[operator]
            reopen(inc, settings, now)
            reappeared += 1
    session.flush()
    return SyncReport(opened=opened, reappeared=reappeared, total=len(found))


def reopen(inc: Incident, settings: Settings, now: datetime) -> None:
    """The content is back: open again, due for a notice now and re-checked as before."""
    inc.state = OPEN
    inc.reappeared += 1
    inc.failures = 0
    inc.first_failure_at = None
    inc.next_notice_at = now
    inc.next_check_at = now + timedelta(seconds=settings.recheck_interval)
    inc.updated_at = now


def mark_noticed(
    session: Session,
    incidents: Iterable[Incident],
    notice_id: int,
    reference: str,
    accepted_at: datetime,
    settings: Settings,
) -> None:
    """A notice covering these incidents was accepted (SMTP 250 / HTTP 2xx)."""
    for inc in incidents:
        if inc.first_noticed_at is None:
            inc.first_noticed_at = accepted_at
            inc.first_reference = reference
        inc.last_noticed_at = accepted_at
        inc.notices_sent += 1
        inc.next_notice_at = accepted_at + timedelta(seconds=settings.renotice_interval)
        if inc.state == OPEN:
            inc.state = NOTICED
        if inc.next_check_at is None:
            inc.next_check_at = accepted_at + timedelta(seconds=settings.recheck_interval)
        inc.updated_at = accepted_at
        session.merge(NoticeIncident(notice_id=notice_id, incident_id=inc.id))


def mark_removed(
    inc: Incident, removed_at: datetime, reason: str, settings: Settings, now: datetime
) -> None:
    inc.state = REMOVED
    inc.removed_at = removed_at
    inc.removal_reason = reason
    inc.next_notice_at = None
    inc.failures = 0
    inc.first_failure_at = None
    if inc.first_noticed_at is not None and inc.removal_seconds is None:
        # Only the first removal counts towards time to removal; a URL removed before any
        # notice was accepted has none (it is counted apart).
        inc.removal_seconds = max(0.0, (removed_at - inc.first_noticed_at).total_seconds())
    inc.next_check_at = now + timedelta(seconds=settings.recheck_interval * WATCH_SPACING)
    inc.updated_at = now


def retract(inc: Incident, now: datetime) -> str:
    """Its list entries were all retracted: no longer known material, so no more notices
    or checks, and no place in the removal figures."""
    inc.state = RETRACTED
    inc.next_notice_at = None
    inc.next_check_at = None
    inc.updated_at = now
    return "retracted"


def watch_over(inc: Incident, settings: Settings, now: datetime) -> bool:
    """Whether a removed incident has been watched for reappearance long enough."""
    if inc.removed_at is None:
        return True
    window = timedelta(seconds=settings.recheck_interval * WATCH_SPACING * WATCH_CHECKS)
    return now - inc.removed_at > window


def tier_for(notices_sent: int, settings: Settings, tiers: int) -> int:
    """Which recipient (0 = provider, 1.. = CDN/upstream, then registrar) a notice goes to:
    each tier gets ``escalate_after`` notices before the next one is tried."""
    if tiers <= 1:
        return 0
    return min(notices_sent // settings.escalate_after, tiers - 1)
