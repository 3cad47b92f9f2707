"""Send notices: first notices for new incidents, reminders while content stays up.

One notice covers a host's due incidents of one cycle (0 = first notice, N = Nth reminder)
and goes to one recipient: the provider, then (after ``escalate_after`` notices each) the
CDN/upstream and the registrar. Each notice is recorded (pending) before delivery and its
outcome after, with no transaction open while the mail server talks, so a crash leaves a
row that the next call retries on the same reference rather than a duplicate.

Idempotent per (host, URL set, cycle): the unique constraint on ``notices`` backs it; an
accepted notice moves its incidents on (next reminder due in ``renotice_interval``), so a
second call finds nothing due. Previews (``dry_run``, the outbox) change no state.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import DeliveryError
from arachne.notices import incidents as inc_mod
from arachne.notices.contacts import Contact, ContactResolver, default_resolver
from arachne.notices.deliver import Notifier, build_notifier
from arachne.notices.hosts import upsert_host
from arachne.notices.items import due_incidents, notice_items
from arachne.notices.render import NoticeDraft, RenderedNotice, render, sender_identity
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import AuditLog, Incident, Notice
from arachne.store.summary import get_campaign

AUDIT_ACTOR = "arachne.notices"
# Notices not (yet) delivered: retried on the same row while the URL set is unchanged, or
# retired as "superseded" when a new notice covers all their URLs. "pending": a run stopped
# between recording the notice and learning the outcome; "queued": a transient failure
# (server down, 4xx) waiting for its retry; "failed": refused for good by that recipient.
UNSENT_STATUSES = ("failed", "queued", "no_contact", "pending")
RETRY_BASE_SECONDS = 60


class NoticeOutcome(dict[str, Any]):
    """One host's result: host, reference, status, recipient, cycle, kind, urls, error.

    A dict so the CLI prints it as JSON directly; attribute access for code."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, Any]:
        return dict(self)


@dataclass(frozen=True)
class SendReport:
    hosts: int
    sent: int
    no_contact: int
    failed: int
    already_sent: int
    notices: tuple[NoticeOutcome, ...] = field(default=())
    previews: tuple[tuple[str | None, RenderedNotice], ...] = field(default=())  # dry run

    def as_json(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "sent": self.sent,
            "no_contact": self.no_contact,
            "failed": self.failed,
            "already_sent": self.already_sent,
            "notices": [dict(o) for o in self.notices],
        }


def url_set_hash(urls: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(urls)).encode()).hexdigest()


def notice_reference(host: str, urls: list[str], cycle: int) -> str:
    """Deterministic: the same host, URL set and cycle always get the same reference."""
    text = f"{host}\n" + "\n".join(sorted(urls)) + f"\n{cycle}"
    return "ARN-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def send_notices(
    store: Store,
    settings: Settings,
    campaign_name: str | None,
    *,
    notifier: Notifier | None = None,
    resolver: ContactResolver | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    respect_backoff: bool = False,
    first_notices: bool = True,
) -> SendReport:
    """Send what is due for the campaign's incidents (every campaign's when ``None``).

    Raises UnknownCampaign for an unknown name and ConfigError for bad settings (contacts
    file, sender identity) before anything is sent; delivery failures are recorded on the
    notice, not raised. ``respect_backoff`` (the scheduled run) waits out each failed
    notice's retry delay; an operator's explicit send retries at once.
    """
    when = now or datetime.now(UTC)
    if notifier is None and not dry_run:
        notifier = build_notifier(settings)
    preview = dry_run or bool(getattr(notifier, "preview", False))
    sender = sender_identity(settings, preview=preview)
    if resolver is None:
        resolver = default_resolver(settings, store)

    with store.session() as session:
        campaign_id = get_campaign(session, campaign_name).id if campaign_name else None
        inc_mod.sync_incidents(session, settings, when, campaign_id)
        due = due_incidents(session, when, campaign_id, first_notices=first_notices)
        items = notice_items(session, [i for group in due.values() for i in group.due])

    outcomes: list[NoticeOutcome] = []
    previews: list[tuple[str | None, RenderedNotice]] = []
    for host in sorted(due):
        group = due[host]
        if not group.due:
            outcomes.append(NoticeOutcome(host=host, reference=None, status="already_sent"))
            continue
        contact = resolver.resolve(host, group.ip)
        if not dry_run:
            with store.session() as session:
                upsert_host(session, host, group.ip, contact, when)
        for cycle, incs in sorted(group.by_cycle().items()):
            job = _Job(host, group.ip, contact, cycle, incs, settings, sender, when)
            draft = job.draft(items)
            rendered = render(draft, settings=settings)
            if dry_run:
                previews.append((job.recipient.email, rendered))
                outcomes.append(job.outcome("preview", rendered.reference))
                continue
            assert notifier is not None
            outcomes.append(
                _deliver(store, settings, notifier, campaign_id, job, rendered, respect_backoff)
            )

    counts = Counter(o["status"] for o in outcomes)
    return SendReport(
        hosts=len({o["host"] for o in outcomes}),
        sent=counts["sent"] + counts["previewed"],
        no_contact=counts["no_contact"],
        failed=counts["failed"] + counts["queued"],
        already_sent=counts["already_sent"],
        notices=tuple(outcomes),
        previews=tuple(previews),
    )


@dataclass
class _Job:
    """One notice to build and deliver: a host's due incidents of one cycle."""

    host: str
    ip: str | None
    contact: Contact
    cycle: int
    incidents: list[Incident]
    settings: Settings
    sender: Any
    now: datetime

    def __post_init__(self) -> None:
        self.urls = sorted(i.url for i in self.incidents)
        self.reference = notice_reference(self.host, self.urls, self.cycle)
        chain = [self.contact, *self.contact.escalation]
        # The tier counts notices the content has already outlived, not reminders sent to
        # a recipient that never had an address.
        self.tier = inc_mod.tier_for(self.cycle, self.settings, len(chain))
        self.recipient = chain[self.tier]
        if self.recipient.email is None:  # an escalation tier without an address
            self.recipient = next((c for c in chain if c.email), self.contact)

    @property
    def kind(self) -> str:
        return "notice" if self.cycle == 0 else "reminder"

    def draft(self, items: dict[int, Any]) -> NoticeDraft:
        firsts = [i for i in self.incidents if i.first_noticed_at is not None]
        first = min(firsts, key=lambda i: i.first_noticed_at) if firsts else None  # type: ignore[arg-type, return-value]
        return NoticeDraft(
            reference=self.reference,
            host=self.host,
            recipient=self.recipient.email,
            items=tuple(items[i.id] for i in sorted(self.incidents, key=lambda i: i.url)),
            reporter_org=self.sender.org,
            reporter_email=self.sender.email,
            cycle=self.cycle,
            ip=self.ip,
            provider=self.contact.provider,
            country=self.recipient.country or self.contact.country,
            language=self.recipient.language,
            first_reference=first.first_reference if first else None,
            first_sent_at=first.first_noticed_at if first else None,
            tier=self.tier,
            about_host_provider=self.contact.provider if self.tier else None,
            recipient_source=self.recipient.source,
        )

    def outcome(self, status: str, reference: str | None, **extra: Any) -> NoticeOutcome:
        return NoticeOutcome(
            host=self.host,
            reference=reference,
            status=status,
            recipient=self.recipient.email,
            recipient_source=self.recipient.source,
            cycle=self.cycle,
            tier=self.tier,
            kind=self.kind,
            urls=len(self.urls),
            **extra,
        )


def _deliver(
    store: Store,
    settings: Settings,
    notifier: Notifier,
    campaign_id: int | None,
    job: _Job,
    rendered: RenderedNotice,
    respect_backoff: bool,
) -> NoticeOutcome:
    if getattr(notifier, "preview", False):
        # A preview (outbox) shows what would go out; the notice stays unsent.
        email = job.recipient.email or "(no contact)"
        try:
            notifier.deliver(rendered, email)
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

    # Step 1: record the notice (pending) before delivering.
    with store.session() as session:
        notice = _notice_row(session, campaign_id, job, rendered, notifier.channel)
        waiting = notice.next_attempt_at is not None and notice.next_attempt_at > job.now
        if respect_backoff and notice.status in ("queued", "failed") and waiting:
            return job.outcome("waiting", notice.reference, error=notice.last_error)
        if notice.status == "sent":  # accepted in a run that died before moving on
            _accepted(session, notice, job, settings)
            return job.outcome("already_sent", notice.reference)
        if job.recipient.email is None:
            # Recorded so an operator sees it (and can add an override); nothing is sent.
            notice.status = "no_contact"
            notice.last_error = job.contact.reason or "no abuse contact found for this host"
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
            notice.status, notice.last_error, notice.next_attempt_at = "sent", None, None
            # The run's clock, not the receipt's: a simulated week must stay in step.
            notice.sent_at = job.now
            notice.response = getattr(receipt, "response", None)
            _accepted(session, notice, job, settings)
        else:
            transient = bool(getattr(error, "transient", True))
            notice.status = "queued" if transient else "failed"
            notice.last_error = str(error)
            delay = min(RETRY_BASE_SECONDS * 2 ** (notice.attempts - 1), settings.renotice_interval)
            notice.next_attempt_at = job.now + timedelta(
                seconds=delay if transient else settings.renotice_interval
            )
        _audit(
            session, job.now, f"notice.{notice.status}", notice, job.host, error=notice.last_error
        )
        return job.outcome(notice.status, notice.reference, error=notice.last_error)


def _notice_row(
    session: Session, campaign_id: int | None, job: _Job, rendered: RenderedNotice, channel: str
) -> Notice:
    from arachne.store.models import Host

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
    notice.recipient = job.recipient.email
    notice.contact_source = job.recipient.source
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


def _accepted(session: Session, notice: Notice, job: _Job, settings: Settings) -> None:
    incidents = [session.get_one(Incident, i.id) for i in job.incidents]
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
