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
    # Registry answers are untrusted input: cut to the columns' sizes (PostgreSQL refuses
    # what SQLite would silently keep).
    row.ip = (ip or row.ip or "")[:64] or None
    row.abuse_email = _cut(contact.email, 320)
    row.contact_source = contact.source[:32]
    row.provider = _cut(contact.provider, 200)
    row.is_cdn = contact.is_cdn
    row.cdn = _cut(contact.cdn, 64)
    row.country = _cut(contact.country, 2)
    row.language = _cut(contact.language, 8)
    row.network = _cut(contact.network, 64)
    row.contact_reason = contact.reason if contact.email is None else None
    row.contact_chain = [step.as_json() for step in contact.chain]
    row.escalation = [  # JSON: no column size to respect
        {"email": c.email, "source": c.source, "provider": c.provider} for c in contact.escalation
    ]
    row.resolved_at = now
    row.updated_at = now
    session.flush()
    return row


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value else None
