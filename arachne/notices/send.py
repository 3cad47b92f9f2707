"""The notices stage: one notice per host for the matched URLs not yet reported to it.

For each host with matches: resolve the abuse contact, record it on the ``hosts`` row, work
out which matched URLs no sent notice covers yet, and send one notice for exactly those.
Each host is committed on its own, and delivery runs outside any transaction so a slow mail
server never holds the database's write lock.

Idempotent per (host, URL set, cycle): the unique constraint on ``notices`` backs it, a
second call finds the URLs covered and sends nothing, and a failed or contact-less notice
is retried on the same row rather than duplicated.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import DeliveryError
from arachne.notices.contacts import Contact, ContactResolver, default_resolver
from arachne.notices.deliver import Notifier, SmtpNotifier
from arachne.notices.render import XARF_CLASSIFICATIONS, NoticeDraft, NoticeItem, render
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import (
    AuditLog,
    HashEntry,
    HashList,
    Host,
    Image,
    Match,
    Notice,
    Sighting,
)
from arachne.store.summary import get_campaign

AUDIT_ACTOR = "arachne.notices"
FIRST_CYCLE = 0
# Notices not (yet) delivered. A later call retries them on the same row when the URL set
# is unchanged, or retires them as "superseded" when a new notice covers all their URLs.
# "pending" means a run stopped between recording the notice and learning the outcome.
UNSENT_STATUSES = ("failed", "no_contact", "pending")


class NoticeOutcome(NamedTuple):
    host: str
    reference: str | None  # None when nothing new was due for the host
    status: str  # sent | failed | no_contact | already_sent


@dataclass(frozen=True)
class SendReport:
    hosts: int
    sent: int
    no_contact: int
    failed: int
    already_sent: int
    notices: tuple[NoticeOutcome, ...] = field(default=())


@dataclass
class _HostMatches:
    items: dict[str, _ItemAcc] = field(default_factory=dict)
    ips: Counter[str] = field(default_factory=Counter)


@dataclass
class _ItemAcc:
    url: str
    page_url: str | None
    sha256: str | None
    md5: str | None
    pdq: str | None
    first_seen_at: datetime | None
    detected_at: datetime
    kinds: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    categories: set[str | None] = field(default_factory=set)

    def freeze(self) -> NoticeItem:
        classes = {c for c in self.categories if c in XARF_CLASSIFICATIONS}
        return NoticeItem(
            url=self.url,
            page_url=self.page_url,
            sha256=self.sha256,
            md5=self.md5,
            pdq=self.pdq,
            match_kind="exact" if "exact" in self.kinds else "near",
            list_names=tuple(sorted(self.lists)),
            detected_at=self.detected_at,
            first_seen_at=self.first_seen_at,
            classification=classes.pop() if len(classes) == 1 else None,
        )


def url_set_hash(urls: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(urls)).encode()).hexdigest()


def notice_reference(host: str, urls: list[str], cycle: int) -> str:
    """Deterministic: the same host, URL set and cycle always get the same reference."""
    text = f"{host}\n" + "\n".join(sorted(urls)) + f"\n{cycle}"
    return "ARN-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def send_notices(
    store: Store,
    settings: Settings,
    campaign_name: str,
    *,
    notifier: Notifier | None = None,
    resolver: ContactResolver | None = None,
    now: datetime | None = None,
) -> SendReport:
    """Send (or record) one notice per host for the campaign's matched URLs not yet reported.

    Raises UnknownCampaign for an unknown name and ConfigError for a bad contacts file;
    delivery failures are recorded on the notice, not raised.
    """
    if resolver is None:
        resolver = default_resolver(settings.contacts_file)
    if notifier is None:
        notifier = SmtpNotifier.from_settings(settings)
    when = now or datetime.now(UTC)

    with store.session() as session:
        campaign_id = get_campaign(session, campaign_name).id
        by_host = _collect_matches(session, campaign_id)

    outcomes = []
    for host in sorted(by_host):
        matches = by_host[host]
        ip = matches.ips.most_common(1)[0][0] if matches.ips else None
        contact = resolver.resolve(host, ip)
        items = [acc.freeze() for acc in matches.items.values()]
        outcomes.append(
            _notify_host(store, settings, notifier, campaign_id, host, ip, contact, items, when)
        )

    counts = Counter(o.status for o in outcomes)
    return SendReport(
        hosts=len(outcomes),
        sent=counts["sent"],
        no_contact=counts["no_contact"],
        failed=counts["failed"],
        already_sent=counts["already_sent"],
        notices=tuple(outcomes),
    )


def _collect_matches(session: Session, campaign_id: int) -> dict[str, _HostMatches]:
    """Matched URLs grouped per host; retracted list entries no longer count."""
    rows = session.execute(
        select(
            Sighting.host,
            Sighting.image_url,
            Sighting.page_url,
            Sighting.server_ip,
            Sighting.fetched_at,
            Image.sha256,
            Image.md5,
            Image.pdq,
            Match.kind,
            Match.created_at,
            HashList.name,
            HashEntry.category,
        )
        .join(Match, Match.sighting_id == Sighting.id)
        .join(HashEntry, HashEntry.id == Match.entry_id)
        .join(HashList, HashList.id == HashEntry.list_id)
        .outerjoin(Image, Image.id == Sighting.image_id)
        .where(Match.campaign_id == campaign_id, HashEntry.deleted_at.is_(None))
    )
    by_host: dict[str, _HostMatches] = {}
    for (
        host,
        url,
        page_url,
        server_ip,
        fetched_at,
        sha256,
        md5,
        pdq,
        kind,
        matched_at,
        list_name,
        category,
    ) in rows:
        hm = by_host.setdefault(host, _HostMatches())
        acc = hm.items.get(url)
        if acc is None:
            acc = hm.items[url] = _ItemAcc(
                url, page_url, sha256, md5, pdq, fetched_at, detected_at=matched_at
            )
            if server_ip:
                hm.ips[server_ip] += 1
        acc.detected_at = min(acc.detected_at, matched_at)
        acc.kinds.add(kind)
        acc.lists.add(list_name)
        acc.categories.add(category)
    return by_host


def _notify_host(
    store: Store,
    settings: Settings,
    notifier: Notifier,
    campaign_id: int,
    host: str,
    ip: str | None,
    contact: Contact,
    items: list[NoticeItem],
    now: datetime,
) -> NoticeOutcome:
    # Step 1: record the contact and the notice (pending) before delivering, so a crash
    # mid-delivery leaves a row that the next call retries.
    with store.session() as session:
        host_row = _upsert_host(session, host, ip, contact, now)
        covered = _sent_urls(session, host_row.id)
        due = [i for i in items if i.url not in covered]
        if not due:
            return NoticeOutcome(host, None, "already_sent")
        urls = sorted(i.url for i in due)
        set_hash = url_set_hash(urls)
        notice = session.scalar(
            select(Notice).where(
                Notice.host_id == host_row.id,
                Notice.url_set_hash == set_hash,
                Notice.cycle == FIRST_CYCLE,
            )
        )
        if notice is not None and notice.status == "sent":  # defensive: covered above
            return NoticeOutcome(host, notice.reference, "already_sent")
        reference = notice_reference(host, urls, FIRST_CYCLE)
        draft = NoticeDraft(
            reference=reference,
            host=host,
            recipient=contact.email,
            items=tuple(due),
            reporter_org=settings.reporter_org,
            reporter_email=settings.reporter_email,
            cycle=FIRST_CYCLE,
            ip=ip,
            provider=contact.provider,
        )
        rendered = render(draft)
        # Before the new row exists: the query below would autoflush it half-filled.
        _supersede_older(session, host_row.id, set(urls), reference)
        if notice is None:
            notice = Notice(
                reference=reference,
                host_id=host_row.id,
                url_set_hash=set_hash,
                cycle=FIRST_CYCLE,
                attempts=0,
                created_at=now,
            )
            session.add(notice)
        notice.campaign_id = campaign_id
        notice.urls = urls
        notice.recipient = contact.email
        notice.subject = rendered.subject
        notice.body = rendered.body_text
        notice.xarf = rendered.xarf
        notice.channel = notifier.channel
        if contact.email is None:
            # Recorded so an operator sees it (and can add an override); nothing is sent.
            notice.status = "no_contact"
            notice.last_error = "no abuse contact found for this host"
            _audit(session, now, "notice.no_contact", notice, host, error=None)
            return NoticeOutcome(host, reference, "no_contact")
        notice.status = "pending"
        session.flush()
        notice_id = notice.id

    # Step 2: deliver with no transaction open.
    error: str | None = None
    try:
        notifier.deliver(rendered, contact.email)
    except DeliveryError as exc:
        error = str(exc)

    # Step 3: record the outcome.
    with store.session() as session:
        notice = session.get_one(Notice, notice_id)
        notice.attempts += 1
        if error is None:
            notice.status, notice.sent_at, notice.last_error = "sent", now, None
        else:
            notice.status, notice.last_error = "failed", error
        _audit(session, now, f"notice.{notice.status}", notice, host, error=error)
        return NoticeOutcome(host, reference, notice.status)


def _upsert_host(
    session: Session, hostname: str, ip: str | None, contact: Contact, now: datetime
) -> Host:
    row = session.scalar(select(Host).where(Host.hostname == hostname))
    if row is None:
        row = Host(hostname=hostname)
        session.add(row)
    row.ip = ip or row.ip
    row.abuse_email = contact.email
    row.contact_source = contact.source
    row.provider = contact.provider
    row.is_cdn = contact.is_cdn
    row.updated_at = now
    session.flush()
    return row


def _sent_urls(session: Session, host_id: int) -> set[str]:
    """URLs any sent first-cycle notice to this host covers, whatever the campaign."""
    lists = session.scalars(
        select(Notice.urls).where(
            Notice.host_id == host_id, Notice.cycle == FIRST_CYCLE, Notice.status == "sent"
        )
    )
    return {url for urls in lists for url in urls}


def _supersede_older(session: Session, host_id: int, urls: set[str], reference: str) -> None:
    """Unsent notices whose URLs the new one covers are retired, not left to retry later."""
    older = session.scalars(
        select(Notice).where(
            Notice.host_id == host_id,
            Notice.cycle == FIRST_CYCLE,
            Notice.status.in_(UNSENT_STATUSES),
            Notice.reference != reference,
        )
    )
    for notice in older:
        if set(notice.urls) <= urls:
            notice.status = "superseded"
            notice.last_error = f"superseded by {reference}"


def _audit(
    session: Session,
    now: datetime,
    action: str,
    notice: Notice,
    host: str,
    *,
    error: str | None,
) -> None:
    detail: dict[str, Any] = {
        "reference": notice.reference,
        "host": host,
        "recipient": notice.recipient,
        "channel": notice.channel,
        "urls": len(notice.urls),
        "attempts": notice.attempts,
    }
    if error:
        detail["error"] = error
    session.add(AuditLog(at=now, actor=AUDIT_ACTOR, action=action, detail=detail))
