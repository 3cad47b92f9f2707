"""RDAP answers cached per returned network range (or domain), with a TTL.

An address inside a cached range costs no query. Ranges compare as 32-digit hex of their
first and last address; among cached ranges holding an address the innermost (greatest
start, then smallest end) wins. A known limit: an answer for a wide parent network also
answers for a narrower network inside it that was never asked about, until the TTL ends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from arachne.notices.contacts.rdap import Answer
from arachne.store.db import Store
from arachne.store.models import ContactCache


def address_hex(ip: str) -> tuple[int, str]:
    """(version, 32 hex digits) so that string order is address order."""
    addr = ipaddress.ip_address(ip)
    return addr.version, f"{int(addr):032x}"


@dataclass(frozen=True)
class Cached:
    answer: Answer
    fetched_at: datetime


class AnswerCache(Protocol):
    def get_ip(self, ip: str, now: datetime) -> Cached | None: ...
    def get_domain(self, domain: str, now: datetime) -> Cached | None: ...
    def put(self, answer: Answer, now: datetime, ttl: int) -> None: ...


@dataclass
class _Row:
    kind: str
    key: str
    version: int
    start_hex: str | None
    end_hex: str | None
    cached: Cached
    expires_at: datetime


def _row(answer: Answer, now: datetime, ttl: int) -> _Row | None:
    if answer.kind == "ip":
        if not (answer.start and answer.end):
            return None  # no range to key it on
        version, start = address_hex(answer.start)
        version_end, end = address_hex(answer.end)
        if version != version_end:
            return None
        return _Row(
            "ip", answer.key, version, start, end, Cached(answer, now), now + timedelta(seconds=ttl)
        )
    return _Row(
        "domain", answer.key, 0, None, None, Cached(answer, now), now + timedelta(seconds=ttl)
    )


class MemoryCache:
    """For a resolver without a store (one process, forgotten at exit)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}

    def get_ip(self, ip: str, now: datetime) -> Cached | None:
        version, h = address_hex(ip)
        rows = [
            r
            for r in self._rows.values()
            if r.kind == "ip"
            and r.version == version
            and r.expires_at > now
            and r.start_hex is not None
            and r.end_hex is not None
            and r.start_hex <= h <= r.end_hex
        ]
        if not rows:
            return None
        best = max(rows, key=lambda r: (r.start_hex, _neg_hex(r.end_hex)))
        return best.cached

    def get_domain(self, domain: str, now: datetime) -> Cached | None:
        row = self._rows.get(("domain", domain))
        return row.cached if row is not None and row.expires_at > now else None

    def put(self, answer: Answer, now: datetime, ttl: int) -> None:
        row = _row(answer, now, ttl)
        if row is not None and ttl > 0:
            self._rows[(row.kind, row.key)] = row


def _neg_hex(value: str | None) -> str:
    """Sort key that prefers the smaller end address under ``max``."""
    return "".join(f"{15 - int(c, 16):x}" for c in value or "")


class StoreCache:
    """The ``contact_cache`` table: shared by every worker and the CLI."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_ip(self, ip: str, now: datetime) -> Cached | None:
        version, h = address_hex(ip)
        query = (
            select(ContactCache)
            .where(
                ContactCache.kind == "ip",
                ContactCache.version == version,
                ContactCache.start_hex <= h,
                ContactCache.end_hex >= h,
                ContactCache.expires_at > now,
            )
            .order_by(ContactCache.start_hex.desc(), ContactCache.end_hex.asc())
            .limit(1)
        )
        with self.store.session() as session:
            row = session.scalars(query).first()
            return Cached(Answer.from_json(row.answer), row.fetched_at) if row else None

    def get_domain(self, domain: str, now: datetime) -> Cached | None:
        query = select(ContactCache).where(
            ContactCache.kind == "domain",
            ContactCache.key == domain,
            ContactCache.expires_at > now,
        )
        with self.store.session() as session:
            row = session.scalars(query).first()
            return Cached(Answer.from_json(row.answer), row.fetched_at) if row else None

    def put(self, answer: Answer, now: datetime, ttl: int) -> None:
        row = _row(answer, now, ttl)
        if row is None or ttl <= 0:
            return
        try:
            with self.store.session() as session:
                existing = session.scalars(
                    select(ContactCache).where(
                        ContactCache.kind == row.kind, ContactCache.key == row.key
                    )
                ).first()
                if existing is None:
                    existing = ContactCache(kind=row.kind, key=row.key)
                    session.add(existing)
                existing.version = row.version
                existing.start_hex = row.start_hex
                existing.end_hex = row.end_hex
                existing.answer = answer.as_json()
                existing.fetched_at = now
                existing.expires_at = row.expires_at
        except IntegrityError:
            pass  # another worker cached the same range at the same moment: theirs will do
