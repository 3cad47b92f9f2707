"""RDAP answers shaped like each registry's, for the local RDAP server (tests and demo).

Our own fixtures with the structure the registries use (RFC 9083 objects, jCards, cidr0
ranges, links, notices); every name, handle and address is made up and benign. Where each
registry puts the abuse contact is what differs, see ``arachne.notices.contacts.entities``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

CONFORMANCE = ["rdap_level_0", "cidr0", "nro_rdap_profile_0"]
NOTICE = {
    "title": "Terms and Conditions",
    "description": ["This is a demo registry answer; it describes no real network."],
    "links": [{"rel": "terms-of-service", "href": "https://registry.example/terms"}],
}


def vcard(
    fn: str,
    *,
    kind: str = "org",
    emails: list[tuple[str, int | None]] | None = None,
    cc: str | None = None,
    label: str | None = None,
) -> list[Any]:
    """A jCard: ``emails`` as (address, pref) pairs, pref None for no parameter."""
    props: list[Any] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn]]
    props.append(["kind", {}, "text", kind])
    if cc or label:
        params: dict[str, Any] = {}
        if label:
            params["label"] = label
        if cc:
            params["cc"] = cc
        props.append(["adr", params, "text", ["", "", "", "", "", "", cc or ""]])
    for address, pref in emails or []:
        props.append(["email", {"pref": str(pref)} if pref is not None else {}, "text", address])
    props.append(["tel", {"type": ["work", "voice"]}, "uri", "tel:+0-000-000-0000"])
    return ["vcard", props]


def entity(handle: str, roles: list[str], card: list[Any] | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"objectClassName": "entity", "handle": handle, "roles": roles}
    if card is not None:
        out["vcardArray"] = card
    out.update(extra)
    return out


def _network(cidr: str, handle: str, name: str, base: str, **extra: Any) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr, strict=False)
    key = "v4prefix" if net.version == 4 else "v6prefix"
    doc: dict[str, Any] = {
        "rdapConformance": CONFORMANCE,
        "objectClassName": "ip network",
        "handle": handle,
        "startAddress": str(net.network_address),
        "endAddress": str(net.broadcast_address),
        "ipVersion": f"v{net.version}",
        "name": name,
        "type": "ASSIGNED PA",
        "cidr0_cidrs": [{key: str(net.network_address), "length": net.prefixlen}],
        "status": ["active"],
        "links": [
            {
                "value": f"{base}ip/{net}",
                "rel": "self",
                "href": f"{base}ip/{net}",
                "type": "application/rdap+json",
            },
        ],
        "events": [{"eventAction": "registration", "eventDate": "2020-01-01T00:00:00Z"}],
        "notices": [NOTICE],
    }
    doc.update(extra)
    return doc


def ripe_network(
    cidr: str,
    provider: str,
    abuse: str,
    country: str = "NL",
    base: str = "https://rdap.registry.example/",
) -> dict[str, Any]:
    """RIPE: the abuse role is a top-level entity beside the registrant organisation."""
    slug = provider.upper().replace(" ", "-")
    return _network(
        cidr,
        f"{cidr} ({slug})",
        f"{slug}-NET",
        base,
        country=country,
        entities=[
            entity("ORG-DH1-RIPE", ["registrant"], vcard(provider, cc=country)),
            entity(
                "DH1-RIPE",
                ["administrative", "technical"],
                vcard("Demo NOC", kind="group", emails=[("noc@" + abuse.split("@")[1], None)]),
            ),
            entity(
                "AR1-RIPE", ["abuse"], vcard("Abuse contact", kind="group", emails=[(abuse, None)])
            ),
        ],
    )


def arin_network(
    cidr: str,
    provider: str,
    abuse: str,
    country: str = "US",
    base: str = "https://rdap.registry.example/",
) -> dict[str, Any]:
    """ARIN: no top-level country; the abuse POC is nested in the registrant org."""
    slug = provider.upper().replace(" ", "")[:8]
    org = entity(
        f"{slug}-1",
        ["registrant"],
        vcard(provider, cc=country, label="1 Demo Way\nUS"),
        entities=[
            entity(
                f"ABUSE1-{slug}", ["abuse"], vcard("Abuse", kind="group", emails=[(abuse, None)])
            ),
            entity(
                f"NOC1-{slug}",
                ["technical"],
                vcard("NOC", kind="group", emails=[("noc@" + abuse.split("@")[1], None)]),
            ),
        ],
    )
    doc = _network(
        cidr, f"NET-{slug}-1", f"{slug}-NET", base, entities=[org], parentHandle="NET-0-0-0-0-1"
    )
    doc["type"] = "DIRECT ALLOCATION"
    return doc


def apnic_network(
    cidr: str,
    provider: str,
    abuse: str,
    country: str = "AU",
    base: str = "https://rdap.registry.example/",
) -> dict[str, Any]:
    """APNIC: an IRT object with the abuse role; its jCard has several e-mails with
    ``pref`` and the abuse mailbox is the preferred one (listed second here on purpose)."""
    slug = provider.upper().replace(" ", "")[:10]
    irt = entity(
        f"IRT-{slug}-{country}",
        ["abuse"],
        vcard(
            f"IRT-{slug}-{country}",
            kind="group",
            emails=[("irt-info@" + abuse.split("@")[1], 2), (abuse, 1)],
        ),
    )
    return _network(
        cidr,
        f"{cidr}",
        f"{slug}-{country}",
        base,
        country=country,
        entities=[
            irt,
            entity(f"ORG-{slug}-AP", ["registrant"], vcard(provider, cc=country)),
            entity(
                f"DH{country}1-AP",
                ["administrative", "technical"],
                vcard(
                    "Demo Admin", kind="individual", emails=[("admin@" + abuse.split("@")[1], None)]
                ),
            ),
        ],
    )


def lacnic_network(
    cidr: str,
    provider: str,
    abuse: str,
    country: str = "BR",
    base: str = "https://rdap.registry.example/",
) -> dict[str, Any]:
    """LACNIC: one entity holds the registrant, administrative and abuse roles at once."""
    slug = provider.upper().replace(" ", "")[:6]
    holder = entity(
        f"{country}-{slug}-LACNIC",
        ["registrant", "administrative", "technical", "abuse"],
        vcard(provider, cc=country, emails=[(abuse, None)]),
    )
    return _network(cidr, cidr, f"{slug}-NET", base, country=country, entities=[holder])


def afrinic_network(
    cidr: str,
    provider: str,
    contact: str,
    country: str = "ZA",
    base: str = "https://rdap.registry.example/",
) -> dict[str, Any]:
    """AFRINIC-style: registrant and administrative/technical persons, no abuse entity."""
    slug = provider.upper().replace(" ", "-")
    return _network(
        cidr,
        f"{slug}-AFRINIC",
        f"{slug}-NET",
        base,
        country=country,
        entities=[
            entity(f"ORG-{slug}-AFR", ["registrant"], vcard(provider, cc=country)),
            entity(
                "DP1-AFRINIC",
                ["administrative", "technical"],
                vcard("Demo Person", kind="individual", emails=[(contact, None)]),
            ),
        ],
    )


def registrar_domain(
    domain: str, registrar: str, abuse: str, iana_id: str = "9999"
) -> dict[str, Any]:
    """A registry's domain answer: registrant data withheld, the registrar entity with its
    abuse contact nested inside (the ICANN RDAP profile's shape)."""
    return {
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_0"],
        "objectClassName": "domain",
        "handle": f"{domain.upper().replace('.', '_')}-DOM",
        "ldhName": domain,
        "status": ["client transfer prohibited"],
        "entities": [
            entity(
                "REDACTED",
                ["registrant"],
                vcard(
                    "REDACTED FOR PRIVACY",
                    kind="individual",
                    emails=[
                        (
                            "Please query the RDDS service of the Registrar of Record "
                            "identified in this output for information on how to "
                            "contact the Registrant",
                            None,
                        )
                    ],
                ),
            ),
            entity(
                iana_id,
                ["registrar"],
                vcard(registrar),
                publicIds=[{"type": "IANA Registrar ID", "identifier": iana_id}],
                entities=[
                    entity("", ["abuse"], vcard("Abuse desk", kind="group", emails=[(abuse, None)]))
                ],
            ),
        ],
        "events": [{"eventAction": "registration", "eventDate": "2019-05-01T00:00:00Z"}],
        "notices": [NOTICE],
    }


def with_referral(doc: dict[str, Any], href: str) -> dict[str, Any]:
    """``doc`` pointing to a more specific RDAP server (``links`` rel=related)."""
    links = [
        *doc.get("links", []),
        {"value": href, "rel": "related", "href": href, "type": "application/rdap+json"},
    ]
    return {**doc, "links": links}


def with_up(doc: dict[str, Any], href: str) -> dict[str, Any]:
    """``doc`` naming the network above it (``links`` rel=up), as registries do for a
    reassignment inside an ISP's allocation."""
    links = [
        *doc.get("links", []),
        {"value": href, "rel": "up", "href": href, "type": "application/rdap+json"},
    ]
    return {**doc, "links": links}


DEMO_SHAPES = (
    (ripe_network, "Demo Hosting A", "abuse@hosting-a.example", "NL"),
    (arin_network, "Demo Hosting B", "abuse@hosting-b.example", "US"),
    (apnic_network, "Demo Hosting C", "abuse@hosting-c.example", "AU"),
)


def demo_networks(hosts: list[str]) -> dict[str, dict[str, Any]]:
    """CIDR -> RDAP answer for the demo's hosts: RIPE-, ARIN- and APNIC-shaped answers for
    the first, second and third host (then round again), each its own /32 (or /128)."""
    out: dict[str, dict[str, Any]] = {}
    for i, host in enumerate(hosts):
        shape, provider, abuse, country = DEMO_SHAPES[i % len(DEMO_SHAPES)]
        net = ipaddress.ip_network(host)  # a single address: /32 or /128
        out[str(net)] = shape(str(net), provider, abuse, country)
    return out
