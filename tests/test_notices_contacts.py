from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from arachne.errors import ConfigError
from arachne.notices.contacts import (
    ChainResolver,
    ChainStep,
    Contact,
    OverridesResolver,
    default_resolver,
    normalise_host,
    registrable_domain,
)
from arachne.settings import Settings

OVERRIDES = """
[hosts]
"127.0.0.2" = "abuse@host-a.example"
"images.example.org" = { email = "abuse@example.org", provider = "Example Hosting" }
"cdn.example.net" = { email = "abuse@cdn.example", provider = "Edge CDN", is_cdn = true }
"Exact.Example.org" = "exact@example.org"
"10.0.0.9" = "ip@example.org"
"2001:db8::1" = "v6@example.org"
"203.0.113.0/24" = { email = "net@example.net", country = "nl", language = "NL" }
"203.0.113.128/25" = "half@example.net"
"2001:db8:1::/48" = "v6net@example.net"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contacts.toml"
    path.write_text(text)
    return path


@pytest.fixture
def resolver(tmp_path: Path) -> OverridesResolver:
    return OverridesResolver(write(tmp_path, OVERRIDES))


def test_string_entry_matches_by_ip(resolver: OverridesResolver) -> None:
    contact = resolver.resolve("host-a.test", "127.0.0.2")
    assert replace(contact, chain=()) == Contact("abuse@host-a.example", "override", None, False)
    (step,) = contact.chain
    assert (step.source, step.query, step.outcome) == ("override", "127.0.0.2", "ok")


def test_table_entry_matches_by_hostname(resolver: OverridesResolver) -> None:
    contact = resolver.resolve("images.example.org", None)
    assert replace(contact, chain=()) == Contact(
        "abuse@example.org", "override", "Example Hosting", False
    )


def test_cidr_entries_longest_prefix_wins(resolver: OverridesResolver) -> None:
    contact = resolver.resolve("shop.example.com", "203.0.113.7")
    assert (contact.email, contact.country, contact.language) == ("net@example.net", "NL", "nl")
    assert contact.network == "203.0.113.0/24"
    assert resolver.resolve("shop.example.com", "203.0.113.200").email == "half@example.net"
    assert resolver.resolve("[2001:db8:1::9]", None).email == "v6net@example.net"
    assert resolver.resolve("shop.example.com", "203.0.114.1").email is None
    # An exact host entry still wins over the network holding its IP.
    assert resolver.resolve("images.example.org", "203.0.113.7").email == "abuse@example.org"


def test_cdn_flag(resolver: OverridesResolver) -> None:
    assert resolver.resolve("cdn.example.net", None).is_cdn is True


def test_parent_domain_matches_subdomain(resolver: OverridesResolver) -> None:
    assert resolver.resolve("a.b.images.example.org", None).email == "abuse@example.org"
    # A suffix that is not a whole label is not a parent domain.
    assert resolver.resolve("badimages.example.org", None).email is None


def test_hostname_wins_over_ip_and_ip_over_parent(resolver: OverridesResolver) -> None:
    assert resolver.resolve("exact.example.org", "10.0.0.9").email == "exact@example.org"
    assert resolver.resolve("sub.images.example.org", "10.0.0.9").email == "ip@example.org"


def test_case_port_and_trailing_dot_are_ignored(resolver: OverridesResolver) -> None:
    assert resolver.resolve("EXACT.example.org.", None).email == "exact@example.org"
    assert resolver.resolve("images.example.org:8080", None).email == "abuse@example.org"
    assert resolver.resolve("127.0.0.2:8001", None).email == "abuse@host-a.example"
    assert resolver.resolve("[2001:db8:0::1]:443", None).email == "v6@example.org"


def test_unknown_host_is_the_no_contact_state(resolver: OverridesResolver) -> None:
    contact = resolver.resolve("elsewhere.test", "192.0.2.1")
    assert contact.email is None
    assert contact.source == "none"


def test_normalise_host() -> None:
    assert normalise_host(" Example.ORG. ") == "example.org"
    assert normalise_host("[2001:DB8::0001]:80") == "2001:db8::1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[hosts\n"a" = "b@c.d"', "not valid TOML"),
        ('"a" = "abuse@example.org"', "[hosts]"),
        ("hosts = 3", "[hosts]"),
        ('[hosts]\n"a.example" = 42', "email string or a table"),
        ('[hosts]\n"a.example" = "not-an-address"', "email must be"),
        ('[hosts]\n"a.example" = "a@b.example\\nBcc: x@y.example"', "email must be"),
        ('[hosts]\n"a.example" = { emial = "a@b.example" }', "unknown key"),
        ('[hosts]\n"a.example" = { email = "a@b.example", is_cdn = "yes" }', "is_cdn"),
        ('[hosts]\n"a.example" = { email = "a@b.example", provider = 1 }', "provider"),
        ('[hosts]\n"A.example" = "a@b.example"\n"a.example" = "c@d.example"', "twice"),
        ('[hosts]\n"a.example" = "a@b.example"\n[extra]\nx = 1', "unknown top-level"),
        ('[hosts]\n"203.0.113.0/33" = "a@b.example"', "not a CIDR"),
        ('[hosts]\n"10.0.0.0/8" = "a@b.example"\n"10.0.0.1/8" = "c@d.example"', "twice"),
        ('[hosts]\n"a.example" = { email = "a@b.example", country = "NLD" }', "country"),
        ('[hosts]\n"a.example" = { email = "a@b.example", language = 7 }', "language"),
    ],
)
def test_malformed_file_is_a_config_error_naming_the_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        OverridesResolver(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        OverridesResolver(tmp_path / "nope.toml")


class Fixed:
    def __init__(self, contact: Contact) -> None:
        self.contact = contact
        self.calls = 0

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        self.calls += 1
        return self.contact


def test_chain_returns_first_contact_with_an_email() -> None:
    empty = Fixed(Contact(None, "none"))
    first = Fixed(Contact("a@x.example", "override"))
    second = Fixed(Contact("b@x.example", "rdap"))
    chain = ChainResolver([empty, first, second])
    assert chain.resolve("h.example", None).email == "a@x.example"
    assert (empty.calls, first.calls, second.calls) == (1, 1, 0)


def test_chain_without_email_is_no_contact_but_keeps_what_it_learned() -> None:
    chain = ChainResolver([Fixed(Contact(None, "rdap", "Edge CDN", True))])
    assert chain.resolve("h.example", None) == Contact(None, "none", "Edge CDN", True)
    assert ChainResolver([]).resolve("h.example", None) == Contact(None, "none")


def test_chain_keeps_every_resolvers_steps() -> None:
    miss = ChainStep("override", "h.example", "no_match")
    hit = ChainStep("rdap-ip", "http://rdap.example/ip/192.0.2.1", "ok", entity="AB1")
    chain = ChainResolver(
        [
            Fixed(Contact(None, "none", chain=(miss,))),
            Fixed(Contact("a@x.example", "rdap", chain=(hit,))),
        ]
    )
    assert chain.resolve("h.example", None).chain == (miss, hit)


def test_contact_json_round_trip() -> None:
    step = ChainStep("rdap-ip", "http://rdap.example/ip/192.0.2.1", "ok", "net", "AB1", "t")
    registrar = Contact("r@registrar.example", "registrar", "Registrar")
    contact = Contact(
        "a@x.example",
        "cdn",
        "Edge",
        True,
        "NL",
        "nl",
        "192.0.2.0/24",
        "fastly",
        (registrar,),
        (step,),
    )
    data = contact.as_json()
    assert data["escalation"][0]["email"] == "r@registrar.example"
    assert data["chain"][0]["entity"] == "AB1"
    assert Contact.from_json(data) == contact


def test_registrable_domain() -> None:
    assert registrable_domain("a.b.Example.ORG.") == "example.org"
    assert registrable_domain("img.shop.example.co.uk") == "example.co.uk"
    assert registrable_domain("co.uk") == "co.uk"
    assert registrable_domain("192.0.2.1") is None and registrable_domain("localhost") is None


def test_default_resolver_overrides_win_without_any_lookup(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        contacts_file=write(tmp_path, OVERRIDES),
        rdap_bootstrap=str(tmp_path / "no-such-bootstrap"),  # would fail if it were read
        dns_servers="127.0.0.1:9",
    )
    resolver = default_resolver(settings)
    assert resolver.resolve("images.example.org", None).email == "abuse@example.org"
    assert resolver.resolve("shop.example.com", "203.0.113.9").email == "net@example.net"


def test_default_resolver_bad_contacts_file_fails_at_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, contacts_file=write(tmp_path, '[hosts]\n"a" = '))
    with pytest.raises(ConfigError, match="not valid TOML"):
        default_resolver(settings)
