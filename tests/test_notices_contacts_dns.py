"""DNS (a real local server) and CDN awareness: by address range and by CNAME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arachne.demo.rdap import RdapServer
from arachne.errors import ConfigError
from arachne.notices.contacts import CdnList, Contact, DnsLookup, default_resolver
from arachne.notices.contacts.dns import parse_servers
from tests.contacts_world import DNS_RECORDS, REGISTRAR_ABUSE, contact_settings
from tests.dns_server import LocalDns, local_dns, silent_dns


@pytest.fixture(scope="module")
def dns_module() -> Iterator[LocalDns]:
    with local_dns(DNS_RECORDS) as server:
        server.servfail.add("broken.shop.test")
        yield server


@pytest.fixture
def dns(dns_module: LocalDns) -> LocalDns:
    dns_module.follow_cnames = True
    dns_module.queries.clear()
    return dns_module


def lookup(dns: LocalDns, name: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    answer = DnsLookup(dns.address, timeout=0.5).lookup(name)
    return answer.outcome, answer.addresses, answer.cnames


def test_a_aaaa_and_cname_chain(dns: LocalDns) -> None:
    assert lookup(dns, "www.shop.test") == ("ok", ("127.0.1.1",), ())
    assert lookup(dns, "six.shop.test") == ("ok", ("::1",), ())
    assert lookup(dns, "edge.shop.test") == ("ok", ("127.0.3.1",), ("e1.shop.test.edgekey.net",))


def test_nxdomain_servfail_and_cname_loops(dns: LocalDns) -> None:
    assert lookup(dns, "nothing.shop.test")[0] == "nxdomain"
    assert lookup(dns, "broken.shop.test")[0] == "servfail"
    assert lookup(dns, "loop.shop.test")[0] == "cname_loop"
    dns.follow_cnames = False  # an authoritative-style server: one CNAME per answer
    assert lookup(dns, "edge.shop.test")[0:2] == ("ok", ("127.0.3.1",))
    assert lookup(dns, "loop.shop.test") == (
        "cname_loop",
        (),
        ("loop2.shop.test", "loop.shop.test"),
    )


def test_dns_timeout() -> None:
    with silent_dns() as address:
        answer = DnsLookup(address, timeout=0.3).lookup("www.shop.test")
    assert answer.outcome == "timeout"


@pytest.mark.parametrize("text", ["nonsense", "127.0.0.1:99999", "localhost:53", " , "])
def test_bad_dns_servers_setting(text: str) -> None:
    with pytest.raises(ConfigError, match="dns_servers"):
        parse_servers(text)


def test_dns_servers_setting_forms() -> None:
    assert parse_servers("127.0.0.1:5353, [::1]:53,192.0.2.53") == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("192.0.2.53", 53),
    ]


def resolve(tmp_path: Path, rdap: RdapServer, dns: LocalDns, host: str, ip: str | None) -> Contact:
    return default_resolver(contact_settings(tmp_path, rdap.url, dns.address)).resolve(host, ip)


def test_without_a_recorded_ip_the_name_is_resolved(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns
) -> None:
    contact = resolve(tmp_path, rdap, dns, "www.shop.test", None)
    assert contact.email == "abuse@hosting-a.example"
    assert contact.chain[0].source == "dns" and "127.0.1.1" in (contact.chain[0].detail or "")
    assert dns.queries["www.shop.test"] >= 1


@pytest.mark.parametrize(
    ("host", "outcome"),
    [
        ("nothing.shop.test", "nxdomain"),
        ("broken.shop.test", "servfail"),
        ("loop.shop.test", "cname_loop"),
    ],
)
def test_dns_failures_leave_the_registrar(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns, host: str, outcome: str
) -> None:
    contact = resolve(tmp_path, rdap, dns, host, None)
    assert [s.outcome for s in contact.chain if s.source == "dns"] == [outcome]
    assert (contact.email, contact.source) == (REGISTRAR_ABUSE, "registrar")
    assert not any(p.startswith("/ip/") for p in rdap.hits)


def test_cidr_override_applies_to_the_address_dns_gave(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns
) -> None:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text('[hosts]\n"127.0.1.0/24" = "desk@ops.example"\n')
    settings = contact_settings(tmp_path, rdap.url, dns.address, contacts_file=contacts)
    contact = default_resolver(settings).resolve("www.shop.test", None)
    assert (contact.email, contact.source) == ("desk@ops.example", "override")
    assert [s.source for s in contact.chain] == ["dns", "override"]
    assert sum(rdap.hits.values()) == 0


def test_dns_failure_with_no_registrar_is_no_contact(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns
) -> None:
    contact = resolve(tmp_path, rdap, dns, "nothing.elsewhere.test", None)
    assert contact.email is None
    assert contact.reason is not None and "nxdomain" in contact.reason


@pytest.mark.parametrize(
    ("ip", "cdn", "email", "network"),
    [
        ("104.16.1.1", "cloudflare", "abuse@cloudflare.com", "104.16.0.0/13"),
        ("2606:4700::6810:1", "cloudflare", "abuse@cloudflare.com", "2606:4700::/32"),
        ("13.32.0.10", "cloudfront", "abuse@amazonaws.com", "13.32.0.0/15"),
        ("151.101.1.1", "fastly", "abuse@fastly.com", "151.101.0.0/16"),
    ],
)
def test_cdn_by_address_range(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns, ip: str, cdn: str, email: str, network: str
) -> None:
    contact = resolve(tmp_path, rdap, dns, "www.shop.test", ip)
    assert (contact.email, contact.source, contact.is_cdn) == (email, "cdn", True)
    assert (contact.cdn, contact.network) == (cdn, network)
    assert [c.email for c in contact.escalation] == [REGISTRAR_ABUSE]
    step = next(s for s in contact.chain if s.source == "cdn")
    assert "2026-12-01" in (step.detail or "")
    assert [s.outcome for s in contact.chain if s.source == "rdap-ip"] == ["skipped"]
    assert not any(p.startswith("/ip/") for p in rdap.hits)


def test_cdn_by_cname_puts_the_network_and_registrar_after_it(
    tmp_path: Path, rdap: RdapServer, dns: LocalDns
) -> None:
    contact = resolve(tmp_path, rdap, dns, "edge.shop.test", "127.0.3.1")
    assert (contact.email, contact.cdn, contact.provider) == (
        "abuse@akamai.com",
        "akamai",
        "Akamai",
    )
    assert [(c.email, c.source) for c in contact.escalation] == [
        ("abuse@hosting-c.example", "rdap"),
        (REGISTRAR_ABUSE, "registrar"),
    ]
    assert rdap.hits["/ip/127.0.3.1"] == 1


def test_cdn_list_is_dated_and_matches_suffixes_exactly() -> None:
    cdn = CdnList.load()
    assert cdn.date == "2026-12-01"
    assert {p.key for p in cdn.providers} == {"cloudflare", "cloudfront", "fastly", "akamai"}
    assert cdn.match(None, ["a.b.akamaized.net"]) is not None
    assert cdn.match(None, ["notakamaized.net"]) is None
    assert cdn.match("192.0.2.1", []) is None
