"""Operator overrides: a TOML file of host name, parent domain, IP or CIDR -> contact.

```toml
[hosts]
"images.example.org" = "abuse@example.org"
"example.net" = { email = "abuse@example.net", provider = "Example", country = "NL" }
"203.0.113.0/24" = { email = "noc@example.com", language = "nl" }
```
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from arachne.clock import iso_utc, utcnow
from arachne.errors import ConfigError
from arachne.notices.contacts.model import ChainStep, Clock, Contact
from arachne.notices.contacts.names import EMAIL_RE, is_ip, normalise_host

_ENTRY_KEYS = frozenset({"email", "provider", "is_cdn", "country", "language"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OverridesResolver:
    """Lookup order: exact host name, then the server IP, then the longest CIDR holding that
    IP, then parent domains (``a.b.example.org`` -> ``b.example.org`` -> ``example.org``).

    Addresses come before parent domains because a subdomain is often served by a different
    provider than its parent, while the IP names the machine that actually holds the content.
    """

    def __init__(self, path: Path | str, *, now: Clock | None = None) -> None:
        self.path = Path(path)
        self.now = now or utcnow
        self.entries, self.networks = load_overrides(self.path)

    def match(self, hostname: str, ip: str | None) -> Contact | None:
        """The override for this host, with the step that found it; None when none applies."""
        host = normalise_host(hostname)
        hit = self._find(host, normalise_host(ip) if ip else None)
        if hit is None:
            return None
        key, contact = hit
        step = ChainStep("override", key, "ok", f"{self.path}", at=iso_utc(self.now()))
        return replace(contact, chain=(step,))

    def miss(self, hostname: str, ip: str | None) -> ChainStep:
        what = f"{hostname} ({ip})" if ip else hostname
        return ChainStep("override", what, "no_match", str(self.path), at=iso_utc(self.now()))

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        contact = self.match(hostname, ip)
        if contact is not None:
            return contact
        return Contact(None, "none", chain=(self.miss(hostname, ip),))

    def _find(self, host: str, ip: str | None) -> tuple[str, Contact] | None:
        if host in self.entries:
            return host, self.entries[host]
        addresses = [a for a in (ip, host) if a and is_ip(a)]
        for address in addresses:
            if address in self.entries:
                return address, self.entries[address]
        for address in addresses:
            addr = ipaddress.ip_address(address)
            best = max(
                (n for n in self.networks if addr.version == n.version and addr in n),
                key=lambda n: n.prefixlen,
                default=None,
            )
            if best is not None:
                return str(best), self.networks[best]
        if not is_ip(host):
            labels = host.split(".")
            for i in range(1, len(labels)):
                parent = ".".join(labels[i:])
                if parent in self.entries:
                    return parent, self.entries[parent]
        return None


def load_overrides(path: Path) -> tuple[dict[str, Contact], dict[Network, Contact]]:
    """Parse and validate the overrides file; every problem is a ConfigError naming the file.

    Returns the host/IP entries and the CIDR entries.
    """
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"contacts file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"contacts file {path}: cannot read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"contacts file {path}: not valid TOML ({exc})") from exc

    hosts = data.get("hosts")
    if not isinstance(hosts, Mapping):
        raise ConfigError(f"contacts file {path}: expected a [hosts] table")
    unknown = sorted(set(data) - {"hosts"})
    if unknown:
        raise ConfigError(f"contacts file {path}: unknown top-level key(s) {unknown}")

    entries: dict[str, Contact] = {}
    networks: dict[Network, Contact] = {}
    for raw_key, value in hosts.items():
        contact = _parse_entry(path, raw_key, value)
        if "/" in raw_key:
            try:
                net = ipaddress.ip_network(raw_key.strip(), strict=False)
            except ValueError:
                raise ConfigError(
                    f"contacts file {path}: {raw_key!r} is not a CIDR like 203.0.113.0/24"
                ) from None
            if net in networks:
                raise ConfigError(f"contacts file {path}: {raw_key!r} is listed twice")
            networks[net] = replace(contact, network=str(net))
            continue
        key = normalise_host(raw_key)
        if not key:
            raise ConfigError(f"contacts file {path}: empty host name in [hosts]")
        if key in entries:
            raise ConfigError(f"contacts file {path}: {raw_key!r} is listed twice")
        entries[key] = contact
    return entries, networks


def _parse_entry(path: Path, key: str, value: Any) -> Contact:
    where = f"contacts file {path}: hosts.{key!r}"
    if isinstance(value, str):
        value = {"email": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected an email string or a table with email = ...")
    unknown = sorted(set(value) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (allowed: {sorted(_ENTRY_KEYS)})")
    email = value.get("email")
    if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
        raise ConfigError(f"{where}: email must be an address like abuse@example.org")
    provider = value.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ConfigError(f"{where}: provider must be a string")
    is_cdn = value.get("is_cdn", False)
    if not isinstance(is_cdn, bool):
        raise ConfigError(f"{where}: is_cdn must be true or false")
    country = value.get("country")
    if country is not None and not (
        isinstance(country, str) and len(country) == 2 and country.isascii() and country.isalpha()
    ):
        raise ConfigError(f"{where}: country must be a two-letter ISO 3166 code like NL")
    language = value.get("language")
    if language is not None and not (
        isinstance(language, str) and 2 <= len(language) <= 8 and language.isascii()
    ):
        raise ConfigError(f"{where}: language must be a language code like en or nl")
    return Contact(
        email=email.strip(),
        source="override",
        provider=provider,
        is_cdn=is_cdn,
        country=country.upper() if country else None,
        language=language.lower() if language else None,
    )
