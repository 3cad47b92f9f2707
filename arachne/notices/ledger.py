"""The notices ledger: a notice is recorded (pending) before delivery and its outcome after.

No transaction is open while the mail server talks, so a crash leaves a ``pending`` row that
the next run (which holds the store-wide "notices" lock, so no other run is in flight)
retries on the same reference rather than a duplicate. Idempotent per (host, URL set,
cycle): the unique constraint on ``notices`` backs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import DeliveryError
from arachne.notices import incidents as inc_mod
from arachne.notices.deliver import Notifier
from arachne.notices.job import Job, NoticeOutcome, url_set_hash
from arachne.notices.render import RenderedNotice
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import AuditLog, Host, Incident, Notice, NoticeIncident
from arachne.urls import url_key

AUDIT_ACTOR = "arachne.notices"
# Notices not (yet) delivered. "pending": a run stopped between recording the notice and
# learning the outcome; "queued": a transient failure (server down, 4xx) waiting for its
# retry; "failed": refused for good by that recipient; "no_contact": nobody to send to yet.
UNSENT_STATUSES = ("failed", "queued", "no_contact", "pending")
RETRY_BASE_SECONDS = 60


def deliver(
    store: Store,
    settings: Settings,
    notifier: Notifier,
    campaign_id: int | None,
    job: Job,
    rendered: RenderedNotice,
    respect_backoff: bool,
) -> NoticeOutcome:
    if getattr(notifier, "preview", False):
        return _preview(store, notifier, job, rendered)

    # Step 1: record the notice (pending) before delivering.
    with store.session() as session:
        notice = _notice_row(session, campaign_id, job, rendered, notifier.channel)
        waiting = notice.next_attempt_at is not None and notice.next_attempt_at > job.now
        if respect_backoff and notice.status in ("queued", "failed", "no_contact") and waiting:
            return job.outcome("waiting", notice.reference, error=notice.last_error)
        if notice.status == "sent":  # accepted in a run that died before moving on
            _accepted(session, notice, job, settings)
            return job.outcome("already_sent", notice.reference)
        if job.recipient.email is None:
            # Recorded so an operator sees it (and can add an override); nothing is sent.
            notice.status = "no_contact"
            notice.last_error = job.contact.reason or "no abuse contact found for this host"
            notice.next_attempt_at = job.now + timedelta(seconds=settings.contact_retry_after)
            _audit(session, job.now, "notice.no_contact", notice, job.host, error=None)
            return job.outcome("no_contact", notice.reference, error=notice.last_error)
        notice.status = "pending"
        session.flush()
        notice_id = notice.id

    # Step 2: deliver with no transaction open.
    error: DeliveryError | None = None
    receipt = None
    try:
        receipt = notifier.deliver(rendered, job.recipient.email)
    except DeliveryError as exc:
        error = exc

    # Step 3: record the outcome; an accepted notice moves its incidents on.
    with store.session() as session:
        notice = session.get_one(Notice, notice_id)
        notice.attempts += 1
        if error is None:
            # The run's clock, not the receipt's: a simulated week must stay in step.
            notice.status, notice.last_error, notice.next_attempt_at = "sent", None, None
            notice.sent_at = job.now
            notice.response = getattr(receipt, "response", None)
            _accepted(session, notice, job, settings)
        else:
            transient = bool(getattr(error, "transient", True))
            notice.status = "queued" if transient else "failed"
            notice.last_error = str(error)
            if transient:
                delay = min(RETRY_BASE_SECONDS * 2 ** (notice.attempts - 1), 3600)
            else:  # the next tier at the next run, or this one again a cycle later
                delay = 0 if job.alternative else settings.renotice_interval
            notice.next_attempt_at = job.now + timedelta(seconds=delay)
        _audit(
            session, job.now, f"notice.{notice.status}", notice, job.host, error=notice.last_error
        )
        return job.outcome(notice.status, notice.reference, error=notice.last_error)


def _preview(store: Store, notifier: Notifier, job: Job, rendered: RenderedNotice) -> NoticeOutcome:
    """A preview (outbox) shows what would go out; the notice stays unsent."""
    try:
        notifier.deliver(rendered, job.recipient.email or "(no contact)")
    except DeliveryError as exc:
        return job.outcome("failed", rendered.reference, error=str(exc))
    with store.session() as session:
        session.add(
            AuditLog(
                at=job.now,
                actor=AUDIT_ACTOR,
                action="notice.previewed",
                detail={"reference": rendered.reference, "channel": notifier.channel},
            )
        )
    return job.outcome("previewed", rendered.reference)


def _notice_row(
    session: Session, campaign_id: int | None, job: Job, rendered: RenderedNotice, channel: str
) -> Notice:
    host_id = session.scalar(select(Host.id).where(Host.hostname == job.host))
    assert host_id is not None, "upsert_host runs first"
    set_hash = url_set_hash(job.urls)
    notice = session.scalar(
        select(Notice).where(
            Notice.host_id == host_id,
            Notice.url_set_hash == set_hash,
            Notice.cycle == job.cycle,
        )
    )
    if notice is not None and notice.status == "sent":
        return notice
    # Before the new row exists: the query below would autoflush it half-filled.
    _supersede_older(session, host_id, job.cycle, set(job.urls), job.reference)
    if notice is None:
        notice = Notice(
            reference=job.reference,
            host_id=host_id,
            url_set_hash=set_hash,
            cycle=job.cycle,
            attempts=0,
            created_at=job.now,
        )
        session.add(notice)
    notice.campaign_id = campaign_id
    notice.urls = job.urls
    notice.recipient = (job.recipient.email or "")[:320] or None
    notice.contact_source = job.recipient.source[:32]
    notice.kind = job.kind
    notice.tier = job.tier
    notice.language = rendered.language
    notice.first_reference = min(
        (i.first_reference for i in job.incidents if i.first_reference), default=None
    )
    notice.subject = rendered.subject
    notice.body = rendered.body_text
    notice.xarf = list(rendered.xarf_reports)
    notice.channel = channel
    return notice


def _accepted(session: Session, notice: Notice, job: Job, settings: Settings) -> None:
    # Idempotent: incidents this notice already moved on are not counted twice.
    linked = set(
        session.scalars(
            select(NoticeIncident.incident_id).where(NoticeIncident.notice_id == notice.id)
        )
    )
    incidents = [session.get_one(Incident, i.id) for i in job.incidents if i.id not in linked]
    accepted_at = notice.sent_at or job.now
    inc_mod.mark_noticed(session, incidents, notice.id, notice.reference, accepted_at, settings)


def _supersede_older(
    session: Session, host_id: int, cycle: int, urls: set[str], reference: str
) -> None:
    """Unsent notices whose URLs the new one covers are retired, not left to retry later."""
    older = session.scalars(
        select(Notice).where(
            Notice.host_id == host_id,
            Notice.cycle == cycle,
            Notice.status.in_(UNSENT_STATUSES),
            Notice.reference != reference,
        )
    )
    for notice in older:
        if set(notice.urls) <= urls:
            notice.status = "superseded"
            notice.last_error = f"superseded by {reference}"


def retire_obsolete(session: Session, now: datetime) -> int:
    """Unsent notices none of whose URLs still needs that notice (removed, retracted, or
    noticed since) are retired, so they neither linger as "queued" nor get retried."""
    unsent = list(session.scalars(select(Notice).where(Notice.status.in_(UNSENT_STATUSES))))
    if not unsent:
        return 0
    keys = sorted({url_key(u) for n in unsent for u in n.urls})
    wanted: dict[str, int] = {}  # url key -> cycle its next notice would be
    for start in range(0, len(keys), 500):
        rows = session.execute(
            select(Incident.url_key, Incident.notices_sent).where(
                Incident.url_key.in_(keys[start : start + 500]),
                Incident.state.in_(inc_mod.ACTIVE_STATES),
            )
        )
        wanted.update({key: sent for key, sent in rows})
    retired = 0
    for notice in unsent:
        if not any(wanted.get(url_key(u)) == notice.cycle for u in notice.urls):
            notice.status = "superseded"
            notice.last_error = "nothing left to send: its URLs were removed or noticed since"
            _audit(session, now, "notice.superseded", notice, "", error=notice.last_error)
            retired += 1
    return retired


def bounced_recipients(session: Session, hostname: str) -> set[str]:
    """Addresses that refused this host's notices for good and accepted none since."""
    rows = session.execute(
        select(Notice.recipient, Notice.status)
        .join(Host, Host.id == Notice.host_id)
        .where(Host.hostname == hostname, Notice.status.in_(("failed", "sent")))
        .order_by(Notice.id)
    )
    bounced: set[str] = set()
    for recipient, status in rows:
        if recipient is None:
            continue
        if status == "failed":
            bounced.add(recipient)
        else:
            bounced.discard(recipient)
    return bounced


def _audit(
    session: Session, now: datetime, action: str, notice: Notice, host: str, *, error: str | None
) -> None:
    detail: dict[str, Any] = {
        "reference": notice.reference,
        "host": host,
        "recipient": notice.recipient,
        "channel": notice.channel,
        "cycle": notice.cycle,
        "tier": notice.tier,
        "urls": len(notice.urls),
        "attempts": notice.attempts,
    }
    if error:
        detail["error"] = error
    session.add(AuditLog(at=now, actor=AUDIT_ACTOR, action=action, detail=detail))
