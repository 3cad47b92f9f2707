"""RDAP resolution against a real local RDAP server: registry shapes, referrals,
placeholders, misbehaving servers, rate limits, private addresses, the bootstrap."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from arachne.demo import rdap_shapes as shapes
from arachne.demo.rdap import RdapData, RdapServer, RdapServerThread, write_bootstrap
from arachne.errors import ConfigError
from arachne.notices.contacts import Contact, RdapHttp, default_resolver
from arachne.notices.contacts import bootstrap as bootstrap_mod
from arachne.notices.contacts.entities import find_abuse, placeholder_reason
from arachne.notices.contacts.http import retry_after_seconds
from arachne.notices.contacts.names import clean_email
from arachne.settings import Settings
from tests.contacts_world import AFRINIC_IP, REGISTRAR_ABUSE, SHAPES, contact_settings, world_data


def resolve(settings: Settings, host: str, ip: str | None = None) -> Contact:
    return default_resolver(settings).resolve(host, ip)


def outcomes(contact: Contact, source: str) -> list[str]:
    return [s.outcome for s in contact.chain if s.source == source]


@pytest.mark.parametrize("ip", sorted(SHAPES))
def test_each_registry_shape_gives_its_abuse_contact(
    tmp_path: Path, rdap: RdapServer, ip: str
) -> None:
    _, network, provider, abuse, country, handle = SHAPES[ip]
    contact = resolve(contact_settings(tmp_path, rdap.url), ip)
    assert (contact.email, contact.source) == (abuse, "rdap")
    assert (contact.provider, contact.country, contact.network) == (provider, country, network)
    step = next(s for s in contact.chain if s.source == "rdap-ip" and s.outcome == "ok")
    assert step.entity == handle
    assert step.query == f"{rdap.url}ip/{ip}"
    assert step.at.endswith("Z")
    assert contact.reason is None


def test_apnic_picks_the_lowest_pref_email() -> None:
    doc = shapes.apnic_network("192.0.2.0/24", "Demo C", "abuse@c.example")
    irt = doc["entities"][0]
    listed = [p[3] for p in irt["vcardArray"][1] if p[0] == "email"]
    assert listed[0] != "abuse@c.example"  # the preferred one is not listed first
    assert find_abuse(doc).email == "abuse@c.example"


def test_afrinic_without_abuse_entity_falls_through_to_the_registrar(
    tmp_path: Path, rdap: RdapServer
) -> None:
    contact = resolve(contact_settings(tmp_path, rdap.url), "www.shop.test", AFRINIC_IP)
    assert (contact.email, contact.source) == (REGISTRAR_ABUSE, "registrar")
    # The registrar answers, but the content is on the AFRINIC network: its holder stays.
    assert (contact.provider, contact.country, contact.network) == (
        "Demo Hosting E",
        "ZA",
        "127.0.5.0/24",
    )
    assert "no_abuse_entity" in outcomes(contact, "rdap-ip")
    assert contact.escalation == ()


def test_afrinic_ip_literal_is_no_contact_with_a_reason(tmp_path: Path, rdap: RdapServer) -> None:
    contact = resolve(contact_settings(tmp_path, rdap.url), AFRINIC_IP)
    assert contact.email is None and contact.source == "none"
    assert contact.provider == "Demo Hosting E" and contact.country == "ZA"
    assert contact.reason is not None and "no_abuse_entity" in contact.reason
    # The administrative/technical person is not an abuse desk.
    assert "person@hosting-e.example" not in json.dumps(contact.as_json())


def test_registrar_is_the_escalation_target(tmp_path: Path, rdap: RdapServer) -> None:
    contact = resolve(contact_settings(tmp_path, rdap.url), "img.www.shop.test", "127.0.1.1")
    assert contact.email == "abuse@hosting-a.example"
    assert [(c.email, c.source, c.provider) for c in contact.escalation] == [
        (REGISTRAR_ABUSE, "registrar", "Registrar One")
    ]
    assert rdap.hits["/domain/shop.test"] == 1
    assert Contact.from_json(json.loads(json.dumps(contact.as_json()))) == contact


@pytest.mark.parametrize(
    ("emails", "outcome"),
    [
        ([("REDACTED FOR PRIVACY", None)], "placeholder"),
        ([("Please query the RDDS service of the Registrar of Record", None)], "placeholder"),
        ([("noreply@registry.example", None)], "placeholder"),
        ([], "no_email"),
        ([("not an address", None)], "no_email"),
    ],
)
def test_unusable_abuse_entities_are_not_contacts(
    tmp_path: Path, emails: list[tuple[str, int | None]], outcome: str
) -> None:
    doc = shapes.ripe_network("127.0.9.0/24", "Hidden Hosting", "x@y.example")
    doc["entities"][2]["vcardArray"] = shapes.vcard("Abuse", kind="group", emails=emails)
    with RdapServerThread(RdapData(networks={"127.0.9.0/24": doc})) as server:
        contact = resolve(contact_settings(tmp_path, server.url), "127.0.9.9")
    assert contact.email is None
    assert outcomes(contact, "rdap-ip") == [outcome]
    assert contact.reason is not None and outcome in contact.reason


def test_placeholder_and_email_rules() -> None:
    assert placeholder_reason("REDACTED") and placeholder_reason("redacted for privacy")
    assert placeholder_reason("abuse@provider.invalid")
    assert placeholder_reason("abuse@provider.example") is None
    assert clean_email("mailto:Abuse@Provider.EXAMPLE") == "Abuse@provider.example"
    assert clean_email("abuse@provider.example\nBcc: x@y.example") is None


def test_referral_to_a_more_specific_registry_is_followed(tmp_path: Path) -> None:
    specific = shapes.lacnic_network("127.0.7.0/25", "Nir Hosting", "abuse@nir.example")
    with RdapServerThread(RdapData(networks={"127.0.7.0/25": specific})) as nir:
        broad = shapes.with_referral(
            shapes.afrinic_network("127.0.7.0/24", "Rir Holder", "p@rir.example"),
            f"{nir.url}ip/127.0.7.5",
        )
        with RdapServerThread(RdapData(networks={"127.0.7.0/24": broad})) as rir:
            contact = resolve(contact_settings(tmp_path, rir.url), "127.0.7.5")
        assert nir.hits["/ip/127.0.7.5"] == 1
    assert (contact.email, contact.network) == ("abuse@nir.example", "127.0.7.0/25")
    assert "referral" in outcomes(contact, "rdap-ip")


def test_the_network_above_is_the_upstream_escalation(tmp_path: Path) -> None:
    """A customer's reassignment names its ISP's allocation (rel=up): the ISP's abuse
    desk is the upstream tier, between the customer's own contact and the registrar."""
    with RdapServerThread(RdapData()) as server:
        isp = shapes.ripe_network("127.0.6.0/24", "Transit ISP", "abuse@isp.example")
        customer = shapes.with_up(
            shapes.ripe_network("127.0.6.0/29", "Customer Ltd", "abuse@customer.example"),
            f"{server.url}ip/127.0.6.0/24",
        )
        server.data.networks.update({"127.0.6.0/24": isp, "127.0.6.0/29": customer})
        contact = resolve(contact_settings(tmp_path, server.url), "127.0.6.3")
        assert server.hits["/ip/127.0.6.0/24"] == 1
    assert (contact.email, contact.network) == ("abuse@customer.example", "127.0.6.0/29")
    assert [(c.email, c.source, c.provider) for c in contact.escalation] == [
        ("abuse@isp.example", "upstream", "Transit ISP")
    ]
    assert "ok" in outcomes(contact, "rdap-up")


def test_a_referral_chain_gives_the_upstream_too(tmp_path: Path) -> None:
    specific = shapes.lacnic_network("127.0.8.0/25", "Nir Hosting", "abuse@nir.example")
    with RdapServerThread(RdapData(networks={"127.0.8.0/25": specific})) as nir:
        broad = shapes.with_referral(
            shapes.ripe_network("127.0.8.0/24", "Rir Holder", "abuse@rir-holder.example"),
            f"{nir.url}ip/127.0.8.5",
        )
        with RdapServerThread(RdapData(networks={"127.0.8.0/24": broad})) as rir:
            contact = resolve(contact_settings(tmp_path, rir.url), "127.0.8.5")
    assert contact.email == "abuse@nir.example"
    assert [(c.email, c.source) for c in contact.escalation] == [
        ("abuse@rir-holder.example", "upstream")
    ]


def test_referral_loop_stops(tmp_path: Path) -> None:
    with RdapServerThread() as a, RdapServerThread() as b:
        a.data.networks["127.0.7.0/24"] = shapes.with_referral(
            shapes.afrinic_network("127.0.7.0/24", "A", "p@a.example"), f"{b.url}ip/127.0.7.5"
        )
        b.data.networks["127.0.7.0/24"] = shapes.with_referral(
            shapes.afrinic_network("127.0.7.0/24", "B", "p@b.example"), f"{a.url}ip/127.0.7.5"
        )
        contact = resolve(contact_settings(tmp_path, a.url), "127.0.7.5")
    assert contact.email is None
    assert "referral_loop" in outcomes(contact, "rdap-ip")


def test_http_redirect_to_another_registry_is_followed(tmp_path: Path, rdap: RdapServer) -> None:
    with RdapServerThread() as empty:
        empty.fault("/ip/", "redirect", location=rdap.url)
        contact = resolve(contact_settings(tmp_path, empty.url), "127.0.2.1")
    assert contact.email == "abuse@hosting-b.example"
    assert "redirected" in outcomes(contact, "rdap-ip")
    assert rdap.hits["/ip/127.0.2.1"] == 1


@pytest.mark.parametrize(
    ("fault", "options", "outcome"),
    [
        ("500", {}, "server_error"),
        ("slow", {"delay": 2.0}, "timeout"),
        ("malformed", {}, "malformed"),
        ("huge", {"size": 64 * 1024}, "too_large"),
        ("huge", {"size": 64 * 1024, "streamed": False}, "too_large"),
        ("redirect_loop", {}, "redirect_loop"),
        ("redirect_private", {}, "refused_private"),
    ],
)
def test_misbehaving_registry_is_recorded_not_raised(
    tmp_path: Path, rdap: RdapServer, fault: str, options: dict[str, Any], outcome: str
) -> None:
    rdap.fault("/ip/", fault, **options)
    settings = contact_settings(tmp_path, rdap.url, rdap_max_bytes=16 * 1024)
    started = time.monotonic()
    contact = resolve(settings, "127.0.1.1")
    assert time.monotonic() - started < 1.5
    assert contact.email is None
    assert outcomes(contact, "rdap-ip")[-1] == outcome
    assert contact.reason is not None and outcome in contact.reason
    detail = next(s.detail for s in contact.chain if s.outcome == outcome) or ""
    if fault == "huge":
        assert ("Content-Length" in detail) != options.get("streamed", True)


def test_429_with_a_short_retry_after_waits_and_retries(tmp_path: Path, rdap: RdapServer) -> None:
    rdap.fault("/ip/", "429", retry_after="1", times=1)
    started = time.monotonic()
    contact = resolve(contact_settings(tmp_path, rdap.url), "127.0.1.1")
    assert time.monotonic() - started >= 0.9
    assert contact.email == "abuse@hosting-a.example"
    assert rdap.hits["/ip/127.0.1.1"] == 2


def test_429_with_a_long_retry_after_gives_up_and_backs_off(
    tmp_path: Path, rdap: RdapServer
) -> None:
    rdap.fault("/ip/", "429", retry_after="3600", times=1)
    resolver = default_resolver(contact_settings(tmp_path, rdap.url))
    first = resolver.resolve("127.0.1.1", None)
    assert first.email is None and outcomes(first, "rdap-ip")[-1] == "rate_limited"
    second = resolver.resolve("127.0.2.1", None)  # same registry: not asked again for now
    assert outcomes(second, "rdap-ip")[-1] == "rate_limited"
    assert rdap.hits["/ip/127.0.1.1"] == 1 and rdap.hits["/ip/127.0.2.1"] == 0


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_requests_per_registry_are_rate_limited(rdap: RdapServer) -> None:
    http = RdapHttp(timeout=1.0, rate=10.0, allow_private=True)
    started = time.monotonic()
    got = [http.get(f"{rdap.url}ip/127.0.{i}.1") for i in range(1, 5)]
    assert time.monotonic() - started >= 0.28  # 4 requests at 10/s: 3 waits of 0.1 s
    assert [g.outcome for g in got] == ["ok"] * 4


def test_private_addresses_are_never_looked_up_without_permission(
    tmp_path: Path, rdap: RdapServer
) -> None:
    settings = contact_settings(tmp_path, rdap.url, allow_private_networks=False)
    contact = resolve(settings, "127.0.1.1")
    assert contact.email is None
    assert outcomes(contact, "rdap-ip") == ["skipped"]
    assert "private" in (contact.reason or "")
    assert sum(rdap.hits.values()) == 0


def test_rdap_urls_on_private_addresses_are_refused(rdap: RdapServer) -> None:
    http = RdapHttp(timeout=1.0, allow_private=False)
    port = rdap.url.rsplit(":", 1)[1].rstrip("/")
    for url in (f"{rdap.url}ip/127.0.1.1", f"http://localhost:{port}/ip/127.0.1.1"):
        assert http.get(url).outcome == "refused_private"
    assert sum(rdap.hits.values()) == 0


def test_ipv6_network(tmp_path: Path, rdap: RdapServer) -> None:
    contact = resolve(contact_settings(tmp_path, rdap.url), "[::1]:8080")
    assert (contact.email, contact.network) == ("abuse@six.example", "::1/128")


def test_bootstrap_longest_prefix_wins(tmp_path: Path, rdap: RdapServer) -> None:
    with RdapServerThread(world_data()) as other:
        folder = write_bootstrap(tmp_path / "bs", rdap.url)
        doc = json.loads((folder / "ipv4.json").read_text())
        doc["services"].append([["127.0.2.0/24"], [other.url]])
        (folder / "ipv4.json").write_text(json.dumps(doc))
        settings = contact_settings(tmp_path, rdap.url, rdap_bootstrap=str(folder))
        assert resolve(settings, "127.0.2.1").email == "abuse@hosting-b.example"
        assert other.hits["/ip/127.0.2.1"] == 1 and rdap.hits["/ip/127.0.2.1"] == 0


@pytest.mark.parametrize(
    ("ip", "registry"),
    [
        ("193.0.6.139", "rdap.db.ripe.net"),
        ("2a00:1450::1", "rdap.db.ripe.net"),
        ("8.8.8.8", "rdap.arin.net"),
        ("2600:1f18::1", "rdap.arin.net"),
        ("1.1.1.1", "rdap.apnic.net"),
        ("203.0.113.1", "rdap.apnic.net"),
        ("200.160.2.3", "rdap.lacnic.net"),
        ("2800:3f0::1", "rdap.lacnic.net"),
        ("41.0.0.1", "rdap.afrinic.net"),
        ("2c0f:fb50::1", "rdap.afrinic.net"),
    ],
)
def test_shipped_bootstrap_maps_addresses_to_their_registry(ip: str, registry: str) -> None:
    shipped = bootstrap_mod.load(str(bootstrap_mod.SHIPPED_DIR), "shipped")
    hit = shipped.ip_base(ip)
    assert hit is not None and registry in hit[1] and hit[1].startswith("https://")
    assert shipped.info.date == "2026-12-01"
    assert shipped.ip_base("127.0.0.1") is None and shipped.ip_base("10.1.2.3") is None
    assert shipped.domain_base("shop.example.com") == (
        "com",
        "https://rdap.verisign.com/com/v1/",
    )


def test_bootstrap_location_prefers_settings_then_updated_then_shipped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert bootstrap_mod.location(settings)[1] == "shipped"
    write_bootstrap(tmp_path / bootstrap_mod.UPDATE_DIR, "http://127.0.0.1:1/")
    assert bootstrap_mod.location(settings)[1] == "updated"
    configured = Settings(data_dir=tmp_path, rdap_bootstrap="https://bootstrap.example/")
    assert bootstrap_mod.location(configured) == ("https://bootstrap.example/", "configured")


def test_single_file_and_url_bootstraps(tmp_path: Path, rdap: RdapServer) -> None:
    mixed = {
        "services": [[["127.0.0.0/8", "::1/128"], [rdap.url]], [["test"], [rdap.url]]],
        "publication": "2026-11-30T00:00:00Z",
    }
    path = tmp_path / "all.json"
    path.write_text(json.dumps(mixed))
    rdap.data.files["all.json"] = mixed
    for where in (str(path), f"{rdap.url}files/all.json"):
        settings = contact_settings(tmp_path, rdap.url, rdap_bootstrap=where)
        contact = resolve(settings, "www.shop.test", "127.0.3.1")
        assert contact.email == "abuse@hosting-c.example"
        assert contact.escalation[0].email == REGISTRAR_ABUSE


@pytest.mark.parametrize(
    "text",
    ["{", '{"services": 3}', '{"services": [["x"]]}', '{"services": [[["300.1/8"], ["u"]]]}'],
)
def test_malformed_bootstrap_is_a_config_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    settings = contact_settings(tmp_path, "http://127.0.0.1:1/", rdap_bootstrap=str(path))
    with pytest.raises(ConfigError, match=str(path)):
        resolve(settings, "127.0.1.1")


def test_demo_networks_serve_the_demo_hosts(tmp_path: Path) -> None:
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with RdapServerThread(RdapData(networks=shapes.demo_networks(hosts))) as server:
        resolver = default_resolver(contact_settings(tmp_path, server.url))
        got = [resolver.resolve(f"{h}:8001", h) for h in hosts]
    assert [(c.email, c.provider, c.country, c.source) for c in got] == [
        ("abuse@hosting-a.example", "Demo Hosting A", "NL", "rdap"),
        ("abuse@hosting-b.example", "Demo Hosting B", "US", "rdap"),
        ("abuse@hosting-c.example", "Demo Hosting C", "AU", "rdap"),
    ]
    assert [c.network for c in got] == [f"{h}/32" for h in hosts]
