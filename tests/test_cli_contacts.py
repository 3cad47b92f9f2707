"""`arachne contacts resolve` and `arachne contacts update` against local servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from arachne.cli import cli
from arachne.demo.rdap import RdapServer, write_bootstrap
from arachne.notices.contacts import bootstrap as bootstrap_mod
from tests.contacts_world import AFRINIC_IP, REGISTRAR_ABUSE, SHAPES


def env(tmp_path: Path, rdap: RdapServer, **extra: str) -> dict[str, str]:
    values = {
        "ARACHNE_DATA_DIR": str(tmp_path / "data"),
        "ARACHNE_RDAP_BOOTSTRAP": str(write_bootstrap(tmp_path / "bootstrap", rdap.url)),
        "ARACHNE_ALLOW_PRIVATE_NETWORKS": "true",
        "ARACHNE_RDAP_TIMEOUT": "0.5",
        "ARACHNE_RDAP_RATE": "1000",
        "ARACHNE_DNS_SERVERS": "127.0.0.1:9",
        "ARACHNE_DNS_TIMEOUT": "0.2",
    }
    values.update(extra)
    return values


def run(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=environ)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("ip", sorted(SHAPES))
def test_resolve_prints_who_and_why(tmp_path: Path, rdap: RdapServer, ip: str) -> None:
    _, network, provider, abuse, country, handle = SHAPES[ip]
    code, out, _ = run(env(tmp_path, rdap), "contacts", "resolve", "www.shop.test", "--ip", ip)
    assert code == 0, out
    assert f"contact     {abuse} (rdap)" in out
    assert f"provider    {provider}" in out and f"country     {country}" in out
    assert f"network     {network}" in out
    assert "cdn         none (CDN list of 2026-12-01)" in out
    assert f"1. {REGISTRAR_ABUSE} (registrar, Registrar One)" in out
    assert f"entity {handle}" in out and f"{rdap.url}ip/{ip}" in out


def test_resolve_without_a_contact_exits_1_with_the_reason(
    tmp_path: Path, rdap: RdapServer
) -> None:
    code, out, _ = run(env(tmp_path, rdap), "contacts", "resolve", AFRINIC_IP)
    assert code == 1
    assert "contact     none: no abuse contact found" in out and "no_abuse_entity" in out


def test_resolve_json_and_the_store_cache(tmp_path: Path, rdap: RdapServer) -> None:
    environ = env(tmp_path, rdap)
    code, out, _ = run(environ, "contacts", "resolve", "127.0.2.1", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["email"] == "abuse@hosting-b.example" and data["country"] == "US"
    assert data["cdn_list_date"] == "2026-12-01"
    assert data["bootstrap"]["kind"] == "configured"
    assert {"source", "query", "outcome", "entity", "at", "detail"} <= set(data["chain"][0])
    # A second command (another process, in effect) answers from the store's cache.
    code, out, _ = run(environ, "contacts", "resolve", "127.0.2.77", "--json")
    assert code == 0 and json.loads(out)["email"] == "abuse@hosting-b.example"
    assert rdap.hits["/ip/127.0.2.1"] == 1 and rdap.hits["/ip/127.0.2.77"] == 0


def test_resolve_cdn_and_override(tmp_path: Path, rdap: RdapServer) -> None:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(
        '[hosts]\n"127.0.1.0/24" = { email = "desk@ops.example", language = "nl" }\n'
    )
    environ = env(tmp_path, rdap, ARACHNE_CONTACTS_FILE=str(contacts))
    code, out, _ = run(environ, "contacts", "resolve", "www.shop.test", "--ip", "104.16.0.1")
    assert code == 0 and "contact     abuse@cloudflare.com (cdn)" in out
    assert "cdn         cloudflare (CDN list of 2026-12-01)" in out
    rdap.hits.clear()
    code, out, _ = run(environ, "contacts", "resolve", "www.shop.test", "--ip", "127.0.1.5")
    assert code == 0 and "contact     desk@ops.example (override)" in out
    assert "language    nl" in out and sum(rdap.hits.values()) == 0


def test_resolve_operator_error_exits_2(tmp_path: Path, rdap: RdapServer) -> None:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text('[hosts]\n"a" = ')
    environ = env(tmp_path, rdap, ARACHNE_CONTACTS_FILE=str(contacts))
    code, _, err = run(environ, "contacts", "resolve", "www.shop.test")
    assert code == 2 and f"contacts file {contacts}" in err


def test_update_refreshes_the_bootstrap_and_the_resolver_uses_it(
    tmp_path: Path, rdap: RdapServer
) -> None:
    folder = write_bootstrap(tmp_path / "published", rdap.url)
    for name in bootstrap_mod.KINDS:
        rdap.data.files[f"{name}.json"] = json.loads((folder / f"{name}.json").read_text())
    environ = env(tmp_path, rdap)
    del environ["ARACHNE_RDAP_BOOTSTRAP"]  # so the updated snapshot is the one used
    code, out, _ = run(environ, "contacts", "update", "--bootstrap-url", f"{rdap.url}files/")
    assert code == 0, out
    dest = tmp_path / "data" / bootstrap_mod.UPDATE_DIR
    assert "RDAP bootstrap updated in" in out and str(dest) in out
    assert {p.name for p in dest.iterdir()} == {"ipv4.json", "ipv6.json", "dns.json", "source.json"}
    code, out, _ = run(environ, "contacts", "resolve", "127.0.3.1", "--json")
    data = json.loads(out)
    assert code == 0 and data["email"] == "abuse@hosting-c.example"
    assert data["bootstrap"]["kind"] == "updated"
    assert data["bootstrap"]["source"] == str(dest)


def test_update_offline_fails_clearly_and_keeps_the_old_snapshot(
    tmp_path: Path, rdap: RdapServer
) -> None:
    environ = env(tmp_path, rdap)
    dest = write_bootstrap(tmp_path / "data" / bootstrap_mod.UPDATE_DIR, rdap.url)
    before = {p.name: p.read_text() for p in dest.iterdir()}
    code, out, err = run(environ, "contacts", "update", "--bootstrap-url", "http://127.0.0.1:9/")
    assert code == 2
    assert err.startswith("error: cannot download http://127.0.0.1:9/ipv4.json")
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_text() for p in dest.iterdir()} == before


def test_update_rejects_something_that_is_not_a_bootstrap(tmp_path: Path, rdap: RdapServer) -> None:
    for name in bootstrap_mod.KINDS:
        rdap.data.files[f"{name}.json"] = {"services": "nope"}
    code, _, err = run(
        env(tmp_path, rdap), "contacts", "update", "--bootstrap-url", f"{rdap.url}files/"
    )
    assert code == 2 and "current bootstrap snapshot is kept" in err
    assert not (tmp_path / "data" / bootstrap_mod.UPDATE_DIR).exists()


def test_help_explains(tmp_path: Path) -> None:
    code, out, _ = run({}, "contacts", "--help")
    assert code == 0 and "resolve" in out and "update" in out and "registrar" in out
    code, out, _ = run({}, "contacts", "resolve", "--help")
    assert code == 0 and "why" in out and "--ip" in out
