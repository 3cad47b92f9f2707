"""Who to notify for a host: an abuse contact, and where it came from.

Resolvers sit behind one small Protocol so the chain can grow (operator overrides first,
then DNS -> IP -> RDAP, then the registrar) without the send stage changing.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from arachne.errors import ConfigError

# Deliberately loose: an address the operator typed, checked only enough to refuse values
# that could never be a recipient or could smuggle extra header lines.
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_ENTRY_KEYS = frozenset({"email", "provider", "is_cdn"})


@dataclass(frozen=True)
class Contact:
    """The outcome of resolving one host; ``email=None`` is the explicit "no contact" state."""

    email: str | None
    source: str  # override | none (later: rdap, registrar)
    provider: str | None = None
    is_cdn: bool = False


NO_CONTACT = Contact(email=None, source="none")


class ContactResolver(Protocol):
    def resolve(self, hostname: str, ip: str | None) -> Contact: ...


def split_port(host: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:80`` -> ``::1``; anything else as is."""
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def normalise_host(host: str) -> str:
    """Lower-case, no port, no trailing dot; IP literals in their canonical form."""
    host = split_port(host.strip()).rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class OverridesResolver:
    """Operator-maintained TOML file: host name or IP -> abuse contact.

    Lookup order: exact host name, then the server IP, then parent domains of the host name
    (``a.b.example.org`` -> ``b.example.org`` -> ``example.org``). The IP comes before the
    parent domain because a subdomain is often served by a different provider than its
    parent, while the IP names the machine that actually holds the content.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.entries: dict[str, Contact] = load_overrides(self.path)

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        host = normalise_host(hostname)
        if host in self.entries:
            return self.entries[host]
        if ip:
            contact = self.entries.get(normalise_host(ip))
            if contact is not None:
                return contact
        if not _is_ip(host):
            labels = host.split(".")
            for i in range(1, len(labels)):
                contact = self.entries.get(".".join(labels[i:]))
                if contact is not None:
                    return contact
        return NO_CONTACT


def load_overrides(path: Path) -> dict[str, Contact]:
    """Parse and validate the overrides file; every problem is a ConfigError naming the file."""
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
    for raw_key, value in hosts.items():
        key = normalise_host(raw_key)
        if not key:
            raise ConfigError(f"contacts file {path}: empty host name in [hosts]")
        if key in entries:
            raise ConfigError(f"contacts file {path}: {raw_key!r} is listed twice")
        entries[key] = _parse_entry(path, raw_key, value)
    return entries


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
    if not isinstance(email, str) or not _EMAIL_RE.match(email.strip()):
        raise ConfigError(f"{where}: email must be an address like abuse@example.org")
    provider = value.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ConfigError(f"{where}: provider must be a string")
    is_cdn = value.get("is_cdn", False)
    if not isinstance(is_cdn, bool):
        raise ConfigError(f"{where}: is_cdn must be true or false")
    return Contact(email=email.strip(), source="override", provider=provider, is_cdn=is_cdn)


class ChainResolver:
    """Asks each resolver in turn; the first contact with an email wins.

    When none has an email, the most informative empty answer is kept (a resolver may know the
    provider or CDN flag without an address), marked ``source="none"``.
    """

    def __init__(self, resolvers: Iterable[ContactResolver]) -> None:
        self.resolvers = list(resolvers)

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        fallback = NO_CONTACT
        for resolver in self.resolvers:
            contact = resolver.resolve(hostname, ip)
            if contact.email:
                return contact
            if fallback is NO_CONTACT and (contact.provider or contact.is_cdn):
                fallback = Contact(None, "none", contact.provider, contact.is_cdn)
        return fallback


def default_resolver(contacts_file: Path | None) -> ChainResolver:
    resolvers: list[ContactResolver] = []
    if contacts_file is not None:
        resolvers.append(OverridesResolver(contacts_file))
    # DNS -> IP -> RDAP abuse contact (and the registrar fallback) plug in here, after the
    # operator's overrides so an operator can always correct what RDAP says.
    return ChainResolver(resolvers)
