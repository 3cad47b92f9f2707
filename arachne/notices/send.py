"""Send notices: first notices for new incidents, reminders while content stays up.

One notice covers a host's due incidents of one cycle (0 = first notice, N = Nth reminder)
and goes to one recipient: the provider, then (after ``escalate_after`` notices each) the
CDN/upstream and the registrar. One run at a time (a store-wide lock), and the ledger
records each notice before and after delivery, so nothing is sent twice: an accepted notice
moves its incidents on (next reminder due in ``renotice_interval``), and a second call finds
nothing due. Previews (``dry_run``, the outbox) change no notice.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from arachne.errors import XarfInvalid
from arachne.notices import incidents as inc_mod
from arachne.notices import ledger
from arachne.notices.contacts import ContactResolver, default_resolver
from arachne.notices.deliver import Notifier, build_notifier
from arachne.notices.hosts import upsert_host
from arachne.notices.items import due_incidents, notice_items
from arachne.notices.job import Job, NoticeOutcome, notice_reference, url_set_hash
from arachne.notices.render import NoticeItem, RenderedNotice, render, sender_identity
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.summary import get_campaign

log = logging.getLogger(__name__)

__all__ = ["NoticeOutcome", "SendReport", "notice_reference", "send_notices", "url_set_hash"]


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
    lock: bool = True,
) -> SendReport:
    """Send what is due for the campaign's incidents (every campaign's when ``None``).

    Raises UnknownCampaign for an unknown name and ConfigError for bad settings (contacts
    file, sender identity) before anything is sent; delivery failures are recorded on the
    notice, not raised. ``respect_backoff`` (the scheduled run) waits out each failed
    notice's retry delay; an operator's explicit send retries at once. ``first_notices=False``
    (also the scheduled run) sends reminders and retries only, never a new incident's first
    notice. ``lock=False``: the caller already holds the store's "notices" lock.
    """
    when = now or datetime.now(UTC)
    if notifier is None and not dry_run:
        notifier = build_notifier(settings)
    preview = dry_run or bool(getattr(notifier, "preview", False))
    sender = sender_identity(settings, preview=preview)
    if resolver is None:
        resolver = default_resolver(settings, store)
    # A dry run changes no notice, so it needs no lock; a real run waits for the other.
    with nullcontext(True) if (dry_run or not lock) else store.exclusive(inc_mod.LOCK):
        return _send(
            store,
            settings,
            campaign_name,
            notifier,
            resolver,
            sender,
            when,
            dry_run=dry_run,
            respect_backoff=respect_backoff,
            first_notices=first_notices,
        )


def _send(
    store: Store,
    settings: Settings,
    campaign_name: str | None,
    notifier: Notifier | None,
    resolver: ContactResolver,
    sender: Any,
    when: datetime,
    *,
    dry_run: bool,
    respect_backoff: bool,
    first_notices: bool,
) -> SendReport:
    with store.session() as session:
        campaign_id = get_campaign(session, campaign_name).id if campaign_name else None
        if first_notices:  # the scheduled run leaves new matches to the operator's send
            inc_mod.sync_incidents(session, settings, when, campaign_id)
        if not dry_run:
            ledger.retire_obsolete(session, when)
        due = due_incidents(session, when, campaign_id, first_notices=first_notices)
        items = notice_items(session, [i for group in due.values() for i in group.due])
        bounced = {h: ledger.bounced_recipients(session, h) for h, g in due.items() if g.due}

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
            job = Job(host, group.ip, contact, cycle, incs, settings, sender, when, bounced[host])
            ready, rendered, invalid = _render(job, items, settings)
            outcomes.extend(invalid)
            if ready is None or rendered is None:
                continue
            if dry_run:
                previews.append((ready.recipient.email, rendered))
                outcomes.append(ready.outcome("previewed", rendered.reference))
                continue
            assert notifier is not None
            outcomes.append(
                ledger.deliver(
                    store, settings, notifier, campaign_id, ready, rendered, respect_backoff
                )
            )

    counts = Counter(o["status"] for o in outcomes)
    return SendReport(
        hosts=len({o["host"] for o in outcomes}),
        sent=counts["sent"] + counts["previewed"],
        no_contact=counts["no_contact"],
        failed=counts["failed"] + counts["queued"] + counts["invalid"],
        already_sent=counts["already_sent"],
        notices=tuple(outcomes),
        previews=tuple(previews),
    )


def _render(
    job: Job, items: dict[int, NoticeItem], settings: Settings
) -> tuple[Job | None, RenderedNotice | None, list[NoticeOutcome]]:
    """Render the job's notice; a URL no valid XARF report can carry is left out (and
    reported), never allowed to stop the host's notice or the run."""
    try:
        return job, render(job.draft(items), settings=settings), []
    except XarfInvalid:
        pass
    bad: list[NoticeOutcome] = []
    for inc in job.incidents:
        alone = job.without({i.url for i in job.incidents if i.id != inc.id})
        assert alone is not None
        try:
            render(alone.draft(items), settings=settings)
        except XarfInvalid as exc:
            log.warning("left out of the notice to %s: %s (%s)", job.host, inc.url, exc)
            bad.append(alone.outcome("invalid", None, url=inc.url, error=str(exc)))
    rest = job.without({o["url"] for o in bad})
    if rest is None:
        return None, None, bad
    try:
        return rest, render(rest.draft(items), settings=settings), bad
    except XarfInvalid as exc:  # not one URL alone: report the whole notice
        return None, None, [*bad, rest.outcome("invalid", rest.reference, error=str(exc))]
