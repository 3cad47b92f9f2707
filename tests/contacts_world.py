"""A small benign Internet for the contact tests: registry-shaped RDAP answers on a local
RDAP server, a local DNS server, a bootstrap folder pointing at them, and settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arachne.demo import rdap_shapes as shapes
from arachne.demo.rdap import RdapData, RdapServer, RdapServerThread, write_bootstrap
from arachne.settings import Settings

REGISTRAR_ABUSE = "abuse@registrar-one.example"
# ip -> (shape, network, provider, abuse e-mail, country, entity handle expected)
SHAPES: dict[str, tuple[Any, str, str, str, str, str]] = {
    "127.0.1.1": (
        shapes.ripe_network,
        "127.0.1.0/24",
        "Demo Hosting A",
        "abuse@hosting-a.example",
        "NL",
        "AR1-RIPE",
    ),
    "127.0.2.1": (
        shapes.arin_network,
        "127.0.2.0/24",
        "Demo Hosting B",
        "abuse@hosting-b.example",
        "US",
        "ABUSE1-DEMOHOST",
    ),
    "127.0.3.1": (
        shapes.apnic_network,
        "127.0.3.0/24",
        "Demo Hosting C",
        "abuse@hosting-c.example",
        "AU",
        "IRT-DEMOHOSTIN-AU",
    ),
    "127.0.4.1": (
        shapes.lacnic_network,
        "127.0.4.0/24",
        "Demo Hosting D",
        "abuse@hosting-d.example",
        "BR",
        "BR-DEMOHO-LACNIC",
    ),
}
AFRINIC_IP = "127.0.5.1"  # no abuse entity
DNS_RECORDS = {
    "www.shop.test": [("A", "127.0.1.1")],
    "shop.test": [("A", "127.0.1.1")],
    "img.unknown.test": [("A", "127.0.2.1")],
    "edge.shop.test": [("CNAME", "e1.shop.test.edgekey.net")],
    "e1.shop.test.edgekey.net": [("A", "127.0.3.1")],
    "six.shop.test": [("AAAA", "::1")],
    "loop.shop.test": [("CNAME", "loop2.shop.test")],
    "loop2.shop.test": [("CNAME", "loop.shop.test")],
}


def network_docs() -> dict[str, dict[str, Any]]:
    docs = {
        net: shape(net, provider, abuse, country)
        for shape, net, provider, abuse, country, _ in SHAPES.values()
    }
    docs["127.0.5.0/24"] = shapes.afrinic_network(
        "127.0.5.0/24", "Demo Hosting E", "person@hosting-e.example"
    )
    docs["::1/128"] = shapes.ripe_network("::1/128", "Demo Hosting Six", "abuse@six.example")
    return docs


def world_data() -> RdapData:
    return RdapData(
        networks=network_docs(),
        domains={
            "shop.test": shapes.registrar_domain("shop.test", "Registrar One", REGISTRAR_ABUSE)
        },
    )


def contact_settings(
    tmp_path: Path, rdap_url: str, dns: str | None = None, **extra: Any
) -> Settings:
    """Short timeouts, no practical rate limit, loopback registries allowed."""
    bootstrap = write_bootstrap(tmp_path / "bootstrap", rdap_url)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rdap_bootstrap": str(bootstrap),
        "allow_private_networks": True,
        "rdap_timeout": 0.5,
        "rdap_rate": 1000.0,
        "dns_servers": dns or "127.0.0.1:9",  # nothing listens on the discard port
        "dns_timeout": 0.3,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture(scope="module")
def rdap_module() -> Iterator[RdapServer]:
    """One local RDAP server per test module, holding the world's answers."""
    with RdapServerThread(world_data()) as server:
        yield server


@pytest.fixture
def rdap(rdap_module: RdapServer) -> RdapServer:
    """The module's RDAP server with its hit counts and faults reset for this test."""
    rdap_module.hits.clear()
    rdap_module.clear_faults()
    return rdap_module
