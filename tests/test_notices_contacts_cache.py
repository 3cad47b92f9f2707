"""The RDAP cache per network range: hits cost no query, the TTL ends them, and the store
holds them for every process (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from arachne.demo.rdap import RdapServer
from arachne.notices.contacts import Answer, MemoryCache, default_resolver
from arachne.notices.contacts.cache import address_hex
from arachne.store.models import ContactCache
from tests.conftest import drop_postgres_database, open_test_store
from tests.contacts_world import contact_settings

PG_DATABASE = "arachne_test_contacts_cache"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def ip_hits(rdap: RdapServer) -> int:
    return sum(n for p, n in rdap.hits.items() if p.startswith("/ip/"))


def test_an_ip_inside_a_cached_range_costs_no_query(tmp_path: Path, rdap: RdapServer) -> None:
    resolver = default_resolver(contact_settings(tmp_path, rdap.url))
    first = resolver.resolve("127.0.1.1", None)
    second = resolver.resolve("127.0.1.200", None)  # same /24
    assert first.email == second.email == "abuse@hosting-a.example"
    assert ip_hits(rdap) == 1
    cached = [s for s in second.chain if s.source == "cache"]
    assert len(cached) == 1 and cached[0].entity == "AR1-RIPE"
    assert "127.0.1.0/24" in (cached[0].detail or "")
    resolver.resolve("127.0.2.1", None)  # another network: asked
    assert ip_hits(rdap) == 2


def test_ttl_expiry_with_the_injected_clock(tmp_path: Path, rdap: RdapServer) -> None:
    clock = Clock()
    settings = contact_settings(tmp_path, rdap.url, rdap_cache_ttl=3600)
    resolver = default_resolver(settings, now=clock)
    resolver.resolve("www.shop.test", "127.0.1.1")
    clock.now += timedelta(seconds=3599)
    resolver.resolve("www.shop.test", "127.0.1.2")
    assert ip_hits(rdap) == 1 and rdap.hits["/domain/shop.test"] == 1
    clock.now += timedelta(seconds=2)
    contact = resolver.resolve("www.shop.test", "127.0.1.3")
    assert ip_hits(rdap) == 2 and rdap.hits["/domain/shop.test"] == 2
    assert contact.chain[-1].at == "2026-12-01T13:00:01Z"


def test_ttl_zero_disables_the_cache(tmp_path: Path, rdap: RdapServer) -> None:
    resolver = default_resolver(contact_settings(tmp_path, rdap.url, rdap_cache_ttl=0))
    resolver.resolve("127.0.1.1", None)
    resolver.resolve("127.0.1.1", None)
    assert ip_hits(rdap) == 2


def test_errors_are_not_cached(tmp_path: Path, rdap: RdapServer) -> None:
    rdap.fault("/ip/", "500", times=1)
    resolver = default_resolver(contact_settings(tmp_path, rdap.url))
    assert resolver.resolve("127.0.1.1", None).email is None
    assert resolver.resolve("127.0.1.1", None).email == "abuse@hosting-a.example"


def test_memory_cache_prefers_the_innermost_range() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    cache = MemoryCache()
    outer = Answer(
        "ip", "10.0.0.0/8", "ok", "u1", "outer@x.example", start="10.0.0.0", end="10.255.255.255"
    )
    inner = Answer(
        "ip", "10.1.0.0/16", "ok", "u2", "inner@x.example", start="10.1.0.0", end="10.1.255.255"
    )
    cache.put(outer, now, 60)
    cache.put(inner, now, 60)
    hit = cache.get_ip("10.1.2.3", now)
    assert hit is not None and hit.answer.email == "inner@x.example"
    hit = cache.get_ip("10.2.0.1", now)
    assert hit is not None and hit.answer.email == "outer@x.example"
    assert cache.get_ip("10.1.2.3", now + timedelta(seconds=61)) is None
    assert cache.get_ip("11.0.0.1", now) is None


def test_address_hex_orders_like_addresses() -> None:
    assert address_hex("10.0.0.2")[1] < address_hex("10.0.0.10")[1]
    assert address_hex("::1") == (6, "0" * 31 + "1")
    assert len(address_hex("2001:db8::1")[1]) == 32


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_cache_is_shared_by_resolvers(tmp_path: Path, rdap: RdapServer, backend: str) -> None:
    store = open_test_store(backend, tmp_path, PG_DATABASE)
    try:
        clock = Clock()
        settings = contact_settings(tmp_path, rdap.url, rdap_cache_ttl=600)
        first = default_resolver(settings, store, now=clock).resolve("www.shop.test", "127.0.2.1")
        assert first.email == "abuse@hosting-b.example"
        with store.session() as session:
            rows = {r.key: r for r in session.scalars(select(ContactCache))}
        assert set(rows) == {"127.0.2.0/24", "shop.test"}
        row = rows["127.0.2.0/24"]
        assert (row.kind, row.version) == ("ip", 4)
        assert (row.start_hex, row.end_hex) == (
            address_hex("127.0.2.0")[1],
            address_hex("127.0.2.255")[1],
        )
        assert row.answer["email"] == "abuse@hosting-b.example"
        assert row.expires_at == clock.now + timedelta(seconds=600)

        # Another resolver (another worker) on the same store: no query at all.
        again = default_resolver(settings, store, now=clock).resolve("www.shop.test", "127.0.2.9")
        assert again.email == "abuse@hosting-b.example"
        assert again.escalation[0].email == first.escalation[0].email
        assert ip_hits(rdap) == 1 and rdap.hits["/domain/shop.test"] == 1
        assert [s.source for s in again.chain].count("cache") == 2

        # Expired: asked again, and the row is refreshed in place.
        clock.now += timedelta(seconds=601)
        default_resolver(settings, store, now=clock).resolve("127.0.2.1", None)
        assert ip_hits(rdap) == 2
        with store.session() as session:
            refreshed = session.scalars(
                select(ContactCache).where(ContactCache.key == "127.0.2.0/24")
            ).one()
        assert refreshed.fetched_at == clock.now
    finally:
        store.dispose()
        if backend == "postgresql":
            drop_postgres_database(PG_DATABASE)
