"""Which pages a campaign may crawl, URL normalisation and crawl-trap filters.

Scope limits the *pages* followed; images embedded on in-scope pages are fetched wherever
they are hosted (abuse material is often served from another host or a CDN).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from w3lib.url import canonicalize_url

from arachne.urls import host_of

MAX_URL_LENGTH = 2048
MAX_PATH_SEGMENTS = 16
MAX_SEGMENT_REPEATS = 3
MAX_QUERY_PARAMS = 12


TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "yclid",
        "_ga",
        "_gl",
        "igshid",
        "ref_src",
    }
)
"""Query parameter names (lower-cased) that only tag where a click came from; any ``utm_*`` too."""

SESSION_PARAMS = frozenset(
    {
        "jsessionid",
        "phpsessid",
        "sid",
        "sessionid",
        "session_id",
        "aspsessionid",
        "cfid",
        "cftoken",
        "zenid",
        "oscsid",
    }
)
"""Query parameter names (lower-cased) that carry a server session id, not page content.

``sid`` is ambiguous, so it is dropped only when its value looks like a token (see
``_SESSION_TOKEN``); ``s`` is left out on purpose: it is a common search parameter.
"""

_SESSION_TOKEN = re.compile(r"[0-9A-Za-z_-]{16,}")
_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/]*")
_JSESSIONID_PATH_PARAM = re.compile(r";jsessionid=[^/;]*", re.IGNORECASE)
_ASPNET_COOKIELESS_SEGMENT = re.compile(r"(?<=/)\(S\([^()/]*\)\)(?:/|$)")


def _is_tracking_pair(pair: str) -> bool:
    raw_name, _, raw_value = pair.partition("=")
    name = unquote_plus(raw_name).lower()
    if name.startswith("utm_") or name in TRACKING_PARAMS:
        return True
    if name == "sid":
        return _SESSION_TOKEN.fullmatch(unquote_plus(raw_value)) is not None
    return name in SESSION_PARAMS


def strip_tracking(url: str) -> str:
    """The URL without tracking tags and session ids, everything else left as it was.

    Sites append utm_* tags, click ids and session ids (in the query, as a ``;jsessionid=``
    path parameter or as an ASP.NET cookieless ``/(S(...))/`` segment) to their links, so one
    page shows up under endlessly many URLs: each variant would be fetched again, wasting the
    crawl budget and defeating page dedup. Kept query parameters keep their order and
    encoding, and the fragment is untouched; a URL with nothing to strip comes back unchanged.
    """
    rest, hash_mark, fragment = url.partition("#")
    rest, question_mark, query = rest.partition("?")
    authority = _AUTHORITY.match(rest)
    split = authority.end() if authority else 0
    prefix, path = rest[:split], rest[split:]

    new_path = _JSESSIONID_PATH_PARAM.sub("", path)
    new_path = _ASPNET_COOKIELESS_SEGMENT.sub("", new_path)
    pairs = query.split("&") if query else []
    kept = [pair for pair in pairs if not _is_tracking_pair(pair)]
    if new_path == path and len(kept) == len(pairs):
        return url

    new_query = "&".join(kept)
    return (
        prefix + new_path + (question_mark + new_query if new_query else "") + hash_mark + fragment
    )


def normalize_url(url: str) -> str:
    """Page dedup key: tracking/session ids stripped, sorted query, no fragment, tidy escapes."""
    return canonicalize_url(strip_tracking(url), keep_fragments=False)


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
    max_pages_per_host: int = 0  # 0: no per-host budget (max_pages still holds)
    stop_after: int = 0  # stop rule: N pages in a row on a host without a match; 0: off
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
        max_pages_per_host: int = 0,
        priority: str = "normal",
        robots: str = "obey",
        stop_after: int = 0,
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
            max_pages_per_host=max_pages_per_host,
            priority=priority,
            robots=robots,
            stop_after=stop_after,
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
            "max_pages_per_host": self.max_pages_per_host,
            "stop_after": self.stop_after,
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
            max_pages_per_host=int(data.get("max_pages_per_host", 0)),
            stop_after=int(data.get("stop_after", 0)),
            include_subdomains=bool(data.get("include_subdomains", True)),
            priority=str(data.get("priority", "normal")),
            robots=str(data.get("robots", "obey")),  # campaigns made before it was a choice
        )
