"""What a resolution returns: a Contact, the steps that found it, and the resolver Protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ChainStep:
    """One step of a resolution, kept as evidence of why a notice went where it went."""

    source: str  # override | dns | cdn | cache | rdap-ip | rdap-up | rdap-domain | bootstrap
    query: str  # what was asked: a URL, a name, a CIDR
    outcome: str  # ok | no_abuse_entity | placeholder | no_email | error | skipped | ...
    detail: str | None = None
    entity: str | None = None  # RDAP handle that gave the email
    at: str = ""  # ISO-8601 UTC

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "query": self.query,
            "outcome": self.outcome,
            "detail": self.detail,
            "entity": self.entity,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainStep:
        return cls(
            source=str(data["source"]),
            query=str(data["query"]),
            outcome=str(data["outcome"]),
            detail=data.get("detail"),
            entity=data.get("entity"),
            at=str(data.get("at") or ""),
        )


@dataclass(frozen=True)
class Contact:
    """The outcome of resolving one host; ``email=None`` is the explicit "no contact" state."""

    email: str | None
    source: str  # override | rdap | cdn | upstream | registrar | none
    provider: str | None = None  # the org name (RDAP registrant / CDN name)
    is_cdn: bool = False
    country: str | None = None  # ISO 3166 alpha-2, upper case
    language: str | None = None  # per-contact notice language ("en"/"nl")
    network: str | None = None  # CIDR/range of the RDAP network, or the CDN range
    cdn: str | None = None  # cloudflare | cloudfront | fastly | akamai
    escalation: tuple[Contact, ...] = ()  # next recipients in order; registrar last
    chain: tuple[ChainStep, ...] = ()
    reason: str | None = None  # when email is None: why (shown to operators)

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "source": self.source,
            "provider": self.provider,
            "is_cdn": self.is_cdn,
            "country": self.country,
            "language": self.language,
            "network": self.network,
            "cdn": self.cdn,
            "escalation": [c.as_json() for c in self.escalation],
            "chain": [s.as_json() for s in self.chain],
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contact:
        """The inverse of ``as_json`` (for contacts stored with a host)."""
        return cls(
            email=data.get("email"),
            source=str(data.get("source") or "none"),
            provider=data.get("provider"),
            is_cdn=bool(data.get("is_cdn", False)),
            country=data.get("country"),
            language=data.get("language"),
            network=data.get("network"),
            cdn=data.get("cdn"),
            escalation=tuple(cls.from_json(c) for c in data.get("escalation") or ()),
            chain=tuple(ChainStep.from_json(s) for s in data.get("chain") or ()),
            reason=data.get("reason"),
        )


NO_CONTACT = Contact(email=None, source="none")


class ContactResolver(Protocol):
    def resolve(self, hostname: str, ip: str | None) -> Contact: ...
