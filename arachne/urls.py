"""URL helpers every stage shares: the host a URL names and its bounded storage key."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit


def host_of(url: str) -> str:
    """Lower-case host name of ``url`` ('' when it has none)."""
    return (urlsplit(url).hostname or "").lower()


def url_key(url: str) -> str:
    """sha1 of the URL: a fixed-size key for Redis sets and unique database columns."""
    return hashlib.sha1(url.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()
