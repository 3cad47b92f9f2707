"""The ``hosts`` rows: each host's current contact and the resolution chain behind it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.notices.contacts import Contact
from arachne.store.models import Host


def upsert_host(
    session: Session, hostname: str, ip: str | None, contact: Contact, now: datetime
) -> Host:
    """Record who gets this host's notices and why (kept as evidence for the operator)."""
    row = session.scalar(select(Host).where(Host.hostname == hostname))
    if row is None:
        row = Host(hostname=hostname)
        session.add(row)
    row.ip = ip or row.ip
    row.abuse_email = contact.email
    row.contact_source = contact.source
    row.provider = contact.provider
    row.is_cdn = contact.is_cdn
    row.cdn = contact.cdn
    row.country = contact.country
    row.language = contact.language
    row.network = contact.network
    row.contact_reason = contact.reason if contact.email is None else None
    row.contact_chain = [step.as_json() for step in contact.chain]
    row.escalation = [
        {"email": c.email, "source": c.source, "provider": c.provider} for c in contact.escalation
    ]
    row.resolved_at = now
    row.updated_at = now
    session.flush()
    return row
