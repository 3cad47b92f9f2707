"""One notice to build: a host's due incidents of one cycle, and who gets it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arachne.notices import incidents as inc_mod
from arachne.notices.contacts import Contact
from arachne.notices.render import NoticeDraft, NoticeItem
from arachne.notices.sender import SenderIdentity
from arachne.settings import Settings
from arachne.store.models import Incident


class NoticeOutcome(dict[str, Any]):
    """One notice's result: host, reference, status, recipient, cycle, tier, kind, urls,
    error. A dict so the CLI prints it as JSON directly; attribute access for code."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, Any]:
        return dict(self)


def url_set_hash(urls: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(urls)).encode()).hexdigest()


def notice_reference(host: str, urls: list[str], cycle: int) -> str:
    """Deterministic: the same host, URL set and cycle always get the same reference."""
    text = f"{host}\n" + "\n".join(sorted(urls)) + f"\n{cycle}"
    return "ARN-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Job:
    host: str
    ip: str | None
    contact: Contact
    cycle: int
    incidents: list[Incident]
    settings: Settings
    sender: SenderIdentity
    now: datetime
    bounced: set[str] = field(default_factory=set)  # recipients that refused for good

    def __post_init__(self) -> None:
        self.urls = sorted(i.url for i in self.incidents)
        self.reference = notice_reference(self.host, self.urls, self.cycle)
        self.chain = [self.contact, *self.contact.escalation]
        # Each tier gets `escalate_after` notices the content outlives, then the next one.
        self.tier = inc_mod.tier_for(self.cycle, self.settings, len(self.chain))
        # A tier without an address, or one that refused for good, passes to the next.
        usable = [
            t
            for t in range(self.tier, len(self.chain))
            if self.chain[t].email and self.chain[t].email not in self.bounced
        ]
        fallback = [t for t in range(len(self.chain)) if self.chain[t].email]
        if usable:
            self.tier = usable[0]
        elif fallback:
            self.tier = fallback[-1]
        self.recipient = self.chain[self.tier]
        self.alternative = len(usable) > 1  # someone left to try if this one refuses

    @property
    def kind(self) -> str:
        return "notice" if self.cycle == 0 else "reminder"

    def draft(self, items: dict[int, NoticeItem]) -> NoticeDraft:
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
            # An escalation goes to another organisation: its own country picks the language.
            country=self.recipient.country if self.tier else self.contact.country,
            language=self.recipient.language,
            first_reference=first.first_reference if first else None,
            first_sent_at=first.first_noticed_at if first else None,
            tier=self.tier,
            about_host_provider=self.contact.provider if self.tier else None,
            recipient_source=self.recipient.source,
            reappeared=any(i.reappeared and i.removed_at for i in self.incidents),
        )

    def without(self, urls: set[str]) -> Job | None:
        """The same job minus some URLs (ones no valid notice can carry)."""
        kept = [i for i in self.incidents if i.url not in urls]
        if not kept:
            return None
        return Job(
            self.host,
            self.ip,
            self.contact,
            self.cycle,
            kept,
            self.settings,
            self.sender,
            self.now,
            self.bounced,
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
