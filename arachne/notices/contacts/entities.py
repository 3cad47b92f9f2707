"""Where each registry puts the abuse contact in an RDAP answer, and what is not a contact.

- RIPE: a top-level entity with role ``abuse``.
- ARIN: the abuse entity nested inside the registrant organisation's ``entities``.
- APNIC: an IRT entity (roles ``abuse``) whose jCard lists several e-mails with ``pref``.
- LACNIC: one entity holding many roles (``registrant``, ``administrative``, ``abuse``...).
- AFRINIC: often no abuse entity at all; the answer falls through (administrative and
  technical contacts are not abuse desks and are not used).
- Domains: the ``registrar`` entity and, nested in it, its ``abuse`` entity.

Abuse entities are searched breadth-first, so a top-level one wins over a nested one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from arachne.notices.contacts.names import clean_email

MAX_DEPTH = 4  # entities inside entities: real answers nest two or three deep

# Registry placeholders for withheld data, matched case-insensitively inside the value.
PLACEHOLDER_MARKERS = (
    "redacted",  # "REDACTED", "REDACTED FOR PRIVACY" (ICANN RDAP profile)
    "please query the rdds",  # "... RDDS service of the Registrar of Record ..."
    "data protected",
    "not disclosed",
    "withheld",
)
# Mailboxes a registry gives for every withheld contact: nobody reads them for abuse.
PLACEHOLDER_LOCAL_PARTS = frozenset(
    {"noreply", "no-reply", "donotreply", "do-not-reply", "nobody", "redacted", "withheld"}
)
# Exact withheld-contact addresses seen answering for unrelated networks. Kept empty until
# one is confirmed: a wrong entry here silently drops a real abuse desk.
PLACEHOLDER_ADDRESSES: frozenset[str] = frozenset()


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` is a registry placeholder rather than a mailbox, or None."""
    low = value.strip().lower()
    if low.startswith("mailto:"):
        low = low[7:]
    for marker in PLACEHOLDER_MARKERS:
        if marker in low:
            return f"placeholder text {value.strip()[:80]!r}"
    local, _, domain = low.rpartition("@")
    if local in PLACEHOLDER_LOCAL_PARTS:
        return f"{low} is a no-reply mailbox"
    if domain == "invalid" or domain.endswith(".invalid"):
        return f"{low} is in the reserved .invalid domain"
    if low in PLACEHOLDER_ADDRESSES:
        return f"{low} is a registry's address for withheld contacts"
    return None


# --- jCard (RFC 7095) ---------------------------------------------------------------------


def jcard(entity: dict[str, Any], name: str) -> list[tuple[dict[str, Any], Any]]:
    """(params, value) of every property ``name`` in the entity's vcardArray."""
    card = entity.get("vcardArray")
    if not (isinstance(card, list) and len(card) >= 2 and isinstance(card[1], list)):
        return []
    out = []
    for prop in card[1]:
        if isinstance(prop, list) and len(prop) >= 4 and prop[0] == name:
            params = prop[1] if isinstance(prop[1], dict) else {}
            out.append((params, prop[3]))
    return out


def _pref(params: dict[str, Any]) -> int:
    value = params.get("pref")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 101  # RFC 6350: 1 is most preferred, 100 least; none comes after all


def emails(entity: dict[str, Any]) -> list[str]:
    """The entity's e-mail values, lowest ``pref`` first (list order among equals)."""
    found = [(p, v) for p, v in jcard(entity, "email") if isinstance(v, str)]
    return [v for _, v in sorted(found, key=lambda pv: _pref(pv[0]))]


def full_name(entity: dict[str, Any]) -> str | None:
    for _, value in jcard(entity, "fn"):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def country_of(entity: dict[str, Any]) -> str | None:
    """From the ``adr`` property: its ``cc`` parameter (RFC 8605), else a two-letter
    country component."""
    for params, value in jcard(entity, "adr"):
        cc = params.get("cc")
        if isinstance(cc, str) and _is_cc(cc):
            return cc.upper()
        part = value[6] if isinstance(value, list) and len(value) >= 7 else None
        if isinstance(part, str) and _is_cc(part):
            return part.upper()
    return None


def _is_cc(value: str) -> bool:
    return len(value) == 2 and value.isascii() and value.isalpha()


def as_list(value: Any) -> list[Any]:
    """A member that should be an array; anything else (hostile or broken) counts as empty."""
    return value if isinstance(value, list) else []


def handle_of(entity: dict[str, Any]) -> str | None:
    """The entity's handle; None when absent or empty (registrars' abuse entities often are)."""
    value = entity.get("handle")
    return value if isinstance(value, str) and value else None


def roles(entity: dict[str, Any]) -> list[str]:
    value = entity.get("roles")
    return [r.lower() for r in value if isinstance(r, str)] if isinstance(value, list) else []


def walk(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every entity under ``doc``, breadth-first (top level first), depth-bounded."""
    level = [e for e in as_list(doc.get("entities")) if isinstance(e, dict)]
    for _ in range(MAX_DEPTH):
        if not level:
            return
        yield from level
        level = [c for e in level for c in as_list(e.get("entities")) if isinstance(c, dict)]


# --- findings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    outcome: str  # ok | no_abuse_entity | no_email | placeholder
    email: str | None = None
    entity: str | None = None  # handle of the entity that gave (or failed to give) it
    detail: str | None = None


def find_abuse(doc: dict[str, Any]) -> Finding:
    """The first usable abuse e-mail under ``doc``; else why there is none."""
    candidates = [e for e in walk(doc) if "abuse" in roles(e)]
    if not candidates:
        return Finding("no_abuse_entity", detail="no entity with role abuse")
    rejected: list[tuple[str | None, str, str]] = []  # (handle, outcome, why)
    for entity in candidates:
        handle = handle_of(entity)
        for value in emails(entity):
            why = placeholder_reason(value)
            if why:
                rejected.append((handle, "placeholder", why))
                continue
            email = clean_email(value)
            if email is None:
                rejected.append((handle, "no_email", f"not an address: {value[:80]!r}"))
                continue
            return Finding("ok", email, handle)
    first = handle_of(candidates[0])
    if not rejected:
        return Finding("no_email", entity=first, detail="abuse entity without an e-mail")
    handle, outcome, why = rejected[0]
    return Finding(outcome, entity=handle, detail=why)


def registrant(doc: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in walk(doc) if "registrant" in roles(e)), None)


def provider_of(doc: dict[str, Any]) -> str | None:
    """The organisation holding the network: the registrant's name, else the network's."""
    holder = registrant(doc)
    name = full_name(holder) if holder else None
    if name:
        return name
    value = doc.get("name")
    return value if isinstance(value, str) and value else None


def network_country(doc: dict[str, Any]) -> str | None:
    """RIPE, APNIC, LACNIC, AFRINIC: ``country``; ARIN: the registrant's address."""
    value = doc.get("country")
    if isinstance(value, str) and _is_cc(value):
        return value.upper()
    holder = registrant(doc)
    return country_of(holder) if holder else None


def network_range(doc: dict[str, Any]) -> tuple[str, str, str] | None:
    """(start, end, text) of an IP network answer: its single CIDR when it is one."""
    try:
        start = ipaddress.ip_address(str(doc["startAddress"]).strip())
        end = ipaddress.ip_address(str(doc["endAddress"]).strip())
    except (KeyError, ValueError):
        return _cidr0(doc)
    if start.version != end.version or int(start) > int(end):
        return _cidr0(doc)
    nets = list(ipaddress.summarize_address_range(start, end))  # type: ignore[arg-type]
    text = str(nets[0]) if len(nets) == 1 else f"{start} - {end}"
    return str(start), str(end), text


def _cidr0(doc: dict[str, Any]) -> tuple[str, str, str] | None:
    for item in as_list(doc.get("cidr0_cidrs")):
        if not isinstance(item, dict):
            continue
        prefix = item.get("v4prefix") or item.get("v6prefix")
        try:
            net = ipaddress.ip_network(f"{prefix}/{item.get('length')}", strict=False)
        except ValueError:
            continue
        return str(net.network_address), str(net.broadcast_address), str(net)
    return None


def find_registrar(doc: dict[str, Any]) -> tuple[Finding, str | None]:
    """(the registrar's abuse finding, the registrar's name) from a domain answer."""
    registrar = next((e for e in walk(doc) if "registrar" in roles(e)), None)
    if registrar is None:
        return Finding("no_registrar", detail="no entity with role registrar"), None
    name = full_name(registrar)
    finding = find_abuse(registrar)
    if finding.outcome == "no_abuse_entity":
        finding = Finding(
            "no_abuse_entity",
            entity=handle_of(registrar),
            detail="registrar entity without an abuse entity",
        )
    return finding, name
