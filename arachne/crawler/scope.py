"""Which pages a campaign may crawl, URL normalisation and crawl-trap filters.

Scope limits the *pages* followed; images embedded on in-scope pages are fetched wherever
they are hosted (abuse material is often served from another host or a CDN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from w3lib.url import canonicalize_url

from arachne.urls import host_of

MAX_URL_LENGTH = 2048
MAX_PATH_SEGMENTS = 16
MAX_SEGMENT_REPEATS = 3
MAX_QUERY_PARAMS = 12


def normalize_url(url: str) -> str:
    """Canonical form for page dedup: sorted query, no fragment, normalised escapes."""
    return canonicalize_url(url, keep_fragments=False)


def trap_reason(url: str) -> str | None:
    """Why a URL looks like a crawl trap (calendars, session loops, path recursion)."""
    if len(url) > MAX_URL_LENGTH:
        return "url_too_long"
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > MAX_PATH_SEGMENTS:
        return "path_too_deep"
    if segments and Counter(segments).most_common(1)[0][1] > MAX_SEGMENT_REPEATS:
        return "repeated_path_segment"
    if len(parse_qsl(parts.query, keep_blank_values=True)) > MAX_QUERY_PARAMS:
        return "too_many_query_params"
    return None


ROBOTS_POLICIES = ("obey", "record", "ignore")
"""robots.txt per campaign: obey it, crawl anyway but count what it disallowed, or ignore it."""


@dataclass(frozen=True)
class Scope:
    allowed_hosts: frozenset[str]
    max_depth: int = 5
    max_pages: int = 10_000
    include_subdomains: bool = True
    priority: str = "normal"  # which image queue its batches go to (high/normal/low)
    robots: str = "obey"  # obey | record (crawl, but count what robots.txt disallowed) | ignore
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def for_seeds(
        cls,
        seeds: Iterable[str],
        allow_hosts: Iterable[str] = (),
        *,
        max_depth: int = 5,
        max_pages: int = 10_000,
        priority: str = "normal",
        robots: str = "obey",
    ) -> Scope:
        hosts = {h.lower().strip() for h in allow_hosts if h.strip()}
        hosts |= {host_of(s) for s in seeds}
        hosts.discard("")  # an empty host would allow every name ending in "."
        if not hosts:
            raise ValueError("no host to crawl: seeds must be absolute http(s) URLs")
        if robots not in ROBOTS_POLICIES:
            raise ValueError(f"robots policy must be one of {', '.join(ROBOTS_POLICIES)}")
        return cls(
            frozenset(hosts),
            max_depth=max_depth,
            max_pages=max_pages,
            priority=priority,
            robots=robots,
        )

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return False
        host = (parts.hostname or "").lower()
        if host in self.allowed_hosts:
            return True
        return self.include_subdomains and any(
            host.endswith("." + allowed) for allowed in self.allowed_hosts
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "allowed_hosts": sorted(self.allowed_hosts),
            "max_depth": self.max_depth,
            "max_pages": self.max_pages,
            "include_subdomains": self.include_subdomains,
            "priority": self.priority,
            "robots": self.robots,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scope:
        return cls(
            frozenset(data.get("allowed_hosts", [])),
            max_depth=int(data.get("max_depth", 5)),
            max_pages=int(data.get("max_pages", 10_000)),
            include_subdomains=bool(data.get("include_subdomains", True)),
            priority=str(data.get("priority", "normal")),
            robots=str(data.get("robots", "obey")),  # campaigns made before it was a choice
        )
