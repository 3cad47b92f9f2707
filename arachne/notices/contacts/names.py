"""Host names, addresses and e-mail addresses as the resolver compares them."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import idna

# Deliberately loose: checked only enough to refuse values that could never be a recipient
# or could smuggle extra header lines.
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")

# Suffixes under which names are registered at the third level. Not the Public Suffix List
# (too big to ship and keep fresh for one decision): the common two-level ccTLD suffixes
# only; a name under any other suffix is taken as registered at its last two labels.
_TWO_LEVEL_SUFFIXES = """
co.uk org.uk me.uk ltd.uk plc.uk net.uk ac.uk gov.uk com.au net.au org.au edu.au
gov.au asn.au id.au co.nz net.nz org.nz co.jp ne.jp or.jp ac.jp com.br net.br org.br
co.za org.za com.cn net.cn org.cn co.in net.in org.in com.mx com.ar com.tr co.kr
or.kr com.sg com.hk com.tw co.il com.ua com.pl
"""
TWO_LEVEL_SUFFIXES = frozenset(_TWO_LEVEL_SUFFIXES.split())


def split_port(host: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:80`` -> ``::1``; anything else as is."""
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def normalise_host(host: str) -> str:
    """Lower-case, no port, no trailing dot; IP literals in their canonical form; IDN names
    as A-labels (punycode), the form DNS and RDAP servers are asked in."""
    host = split_port(host.strip()).rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        # Left as is when it is no valid IDN: its lookups fail, and the chain says why.
        with contextlib.suppress(idna.IDNAError):
            host = idna.encode(host, uts46=True).decode("ascii")
    return host


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def registrable_domain(host: str) -> str | None:
    """The name a registrar holds for ``host`` (``a.b.example.co.uk`` -> ``example.co.uk``);
    None for IP literals and single labels."""
    host = normalise_host(host)
    if is_ip(host):
        return None
    labels = [label for label in host.split(".") if label]
    if len(labels) < 2:
        return None
    if len(labels) >= 3 and ".".join(labels[-2:]) in TWO_LEVEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def clean_email(value: str) -> str | None:
    """``mailto:Abuse@Example.NET`` -> ``Abuse@example.net``; None when not an address.

    Only the domain is lower-cased: the local part is the mailbox owner's to interpret.
    """
    value = value.strip()
    if value[:7].lower() == "mailto:":
        value = value[7:].strip()
    if not EMAIL_RE.match(value):
        return None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"
