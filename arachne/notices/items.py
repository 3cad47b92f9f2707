"""What a notice lists: the due incidents per host, and each one's evidence as a NoticeItem."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.notices.incidents import ACTIVE_STATES
from arachne.notices.render import NoticeItem
from arachne.store.models import HashEntry, HashList, Image, Incident, Match, Notice, Sighting

_CHUNK = 500
RETRIED_STATUSES = ("queued", "pending", "failed", "no_contact")
"""Unsent notices the scheduled run retries (after their back-off)."""


@dataclass
class HostDue:
    """A host's active incidents: those due for a notice now, and the server IP seen."""

    due: list[Incident] = field(default_factory=list)
    ips: Counter[str] = field(default_factory=Counter)
    active: int = 0

    @property
    def ip(self) -> str | None:
        return self.ips.most_common(1)[0][0] if self.ips else None

    def by_cycle(self) -> dict[int, list[Incident]]:
        """One notice per cycle: incidents noticed as often as each other go together."""
        groups: dict[int, list[Incident]] = defaultdict(list)
        for inc in self.due:
            groups[inc.notices_sent].append(inc)
        return dict(groups)


def due_incidents(
    session: Session, now: datetime, campaign_id: int | None = None, *, first_notices: bool = True
) -> dict[str, HostDue]:
    """Active incidents per host; due = never accepted yet, or its reminder time has come.

    Without ``first_notices`` (the scheduled run), a never-noticed incident is due only when
    a notice for it is already waiting for a retry: the first notice is the operator's call.
    """
    retrying: set[str] | None = None
    if not first_notices:
        waiting = session.scalars(
            select(Notice.urls).where(Notice.status.in_(RETRIED_STATUSES), Notice.cycle == 0)
        )
        retrying = {url for urls in waiting for url in urls}
    stmt = (
        select(Incident, Sighting.server_ip)
        .outerjoin(Sighting, Sighting.id == Incident.sighting_id)
        .where(Incident.state.in_(ACTIVE_STATES))
        .order_by(Incident.id)
    )
    if campaign_id is not None:
        stmt = stmt.where(Incident.campaign_id == campaign_id)
    hosts: dict[str, HostDue] = {}
    for inc, server_ip in session.execute(stmt):
        hd = hosts.setdefault(inc.host, HostDue())
        hd.active += 1
        if server_ip:
            hd.ips[server_ip] += 1
        if inc.notices_sent == 0:
            if retrying is None or inc.url in retrying:
                hd.due.append(inc)
        elif inc.next_notice_at is not None and inc.next_notice_at <= now:
            hd.due.append(inc)
    return hosts


def notice_items(session: Session, incidents: Sequence[Incident]) -> dict[int, NoticeItem]:
    """incident id -> NoticeItem: hashes, how it matched, which lists, their categories."""
    by_sighting = {inc.sighting_id: inc for inc in incidents if inc.sighting_id is not None}
    entry_ids = sorted({e for inc in incidents for e in (inc.entry_ids or [])})
    entries: dict[int, tuple[str, str | None]] = {}
    for start in range(0, len(entry_ids), _CHUNK):
        rows = session.execute(
            select(HashEntry.id, HashList.name, HashEntry.category)
            .join(HashList, HashList.id == HashEntry.list_id)
            .where(HashEntry.id.in_(entry_ids[start : start + _CHUNK]))
        )
        entries.update({eid: (name, cat) for eid, name, cat in rows})

    kinds: dict[int, set[str]] = defaultdict(set)
    detected: dict[int, datetime] = {}
    md5s: dict[int, str | None] = {}
    seen: dict[int, datetime] = {}
    sids = list(by_sighting)
    for start in range(0, len(sids), _CHUNK):
        rows = session.execute(
            select(Match.sighting_id, Match.kind, Match.created_at, Image.md5, Sighting.fetched_at)
            .join(Sighting, Sighting.id == Match.sighting_id)
            .outerjoin(Image, Image.id == Sighting.image_id)
            .where(Match.sighting_id.in_(sids[start : start + _CHUNK]))
        )
        for sid, kind, created, md5, first_seen in rows:
            inc = by_sighting[sid]
            kinds[inc.id].add(kind)
            detected[inc.id] = min(detected.get(inc.id, created), created)
            md5s[inc.id] = md5
            if first_seen is not None:
                seen[inc.id] = first_seen

    out: dict[int, NoticeItem] = {}
    for inc in incidents:
        lists = sorted({entries[e][0] for e in inc.entry_ids or [] if e in entries})
        categories = tuple(
            sorted({c for e in inc.entry_ids or [] if e in entries and (c := entries[e][1])})
        )
        out[inc.id] = NoticeItem(
            url=inc.url,
            page_url=inc.page_url,
            sha256=inc.sha256,
            md5=md5s.get(inc.id),
            pdq=inc.pdq,
            match_kind="exact" if "exact" in kinds[inc.id] or not kinds[inc.id] else "near",
            list_names=tuple(lists),
            detected_at=detected.get(inc.id, inc.opened_at),
            first_seen_at=seen.get(inc.id),
            categories=categories,
            last_checked_at=inc.last_checked_at,
        )
    return out
