"""CDN awareness: a CDN-fronted host's notice goes to the CDN first (it knows the origin).

Recognised by address (the bundled, dated range lists of Cloudflare, CloudFront and Fastly)
or by a CNAME suffix (Akamai publishes no list; the others' suffixes are recognised too).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arachne.errors import ConfigError

CDN_FILE = Path(__file__).parent / "data" / "cdn.json"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CdnProvider:
    key: str  # cloudflare | cloudfront | fastly | akamai
    name: str
    abuse: str  # the provider's published abuse address
    source: str  # where its ranges come from
    networks: tuple[Network, ...]
    cname_suffixes: tuple[str, ...]


@dataclass(frozen=True)
class CdnMatch:
    provider: CdnProvider
    via: str  # range | cname
    matched: str  # the range holding the address, or the CNAME that ends in a suffix


class CdnList:
    def __init__(self, providers: list[CdnProvider], date: str, source: str) -> None:
        self.providers = providers
        self.date = date  # printed with every CDN verdict: the list goes stale
        self.source = source

    @classmethod
    def load(cls, path: Path = CDN_FILE) -> CdnList:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            providers = [
                CdnProvider(
                    key=key,
                    name=str(p["name"]),
                    abuse=str(p["abuse"]),
                    source=str(p.get("source", "")),
                    networks=tuple(ipaddress.ip_network(r) for r in p.get("ranges", [])),
                    cname_suffixes=tuple(s.lower().strip(".") for s in p.get("cname_suffixes", [])),
                )
                for key, p in data["providers"].items()
            ]
            return cls(providers, str(data["date"]), str(path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"CDN list {path}: cannot load ({exc})") from exc

    def match(self, ip: str | None, cnames: tuple[str, ...] | list[str] = ()) -> CdnMatch | None:
        """By address first (exact), then by the first CNAME ending in a known suffix."""
        if ip:
            addr = ipaddress.ip_address(ip)
            for provider in self.providers:
                for net in provider.networks:
                    if addr.version == net.version and addr in net:
                        return CdnMatch(provider, "range", str(net))
        for name in cnames:
            name = name.lower().strip(".")
            for provider in self.providers:
                for suffix in provider.cname_suffixes:
                    if name == suffix or name.endswith("." + suffix):
                        return CdnMatch(provider, "cname", name)
        return None
