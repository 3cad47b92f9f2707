"""The RDAP HTTP client: one JSON document per call, every failure an outcome.

Bounded everywhere a registry (or something posing as one) could hold us: a total timeout,
a byte cap read as it arrives, a few redirects with loop detection, no private addresses
unless the settings allow them, a token bucket per registry and ``Retry-After`` honoured.
``get`` is synchronous (the send stage is); each call runs its own small event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from arachne.aio import run_sync
from arachne.queue.fetch import BlockedAddress, PublicOnlyResolver, is_public, retry_after_seconds
from arachne.settings import Settings

MAX_REDIRECTS = 3
MAX_RETRY_WAIT = 5.0  # a longer Retry-After gives up for now instead of stalling a send
DEFAULT_BACKOFF = 60.0  # a 429 without a usable Retry-After blocks the registry this long
ACCEPT = "application/rdap+json, application/json;q=0.9"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    url: str  # what was asked
    # ok | not_found | rate_limited | server_error | http_error | timeout | malformed |
    # too_large | redirect_loop | too_many_redirects | refused_private | error
    outcome: str
    doc: dict[str, Any] | None = None
    detail: str | None = None
    final_url: str | None = None  # after redirects
    status: int | None = None


def registry_key(url: str) -> str:
    """Rate limits and back-offs apply per server: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class TokenBucket:
    """``rate`` requests a second per key, bursts of ``burst``; thread-safe."""

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] | None = None):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.clock = clock or time.monotonic
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def reserve(self, key: str) -> float:
        """Take a token; returns how long to wait before using it."""
        with self._lock:
            now = self.clock()
            tokens, at = self._state.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate) - 1.0
            self._state[key] = (tokens, now)
            return 0.0 if tokens >= 0 else -tokens / self.rate


class RdapHttp:
    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_bytes: int = 2 * 1024 * 1024,
        rate: float = 2.0,
        allow_private: bool = False,
        user_agent: str = "ArachneBot/0.1",
        max_redirects: int = MAX_REDIRECTS,
        max_retry_wait: float = MAX_RETRY_WAIT,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.max_redirects = max_redirects
        self.max_retry_wait = max_retry_wait
        self.bucket = TokenBucket(rate)
        self._blocked: dict[str, float] = {}  # registry -> monotonic time it may be asked again

    @classmethod
    def from_settings(cls, settings: Settings) -> RdapHttp:
        return cls(
            timeout=settings.rdap_timeout,
            max_bytes=settings.rdap_max_bytes,
            rate=settings.rdap_rate,
            allow_private=settings.allow_private_networks,
            user_agent=settings.agent,
        )

    def get(self, url: str) -> Fetched:
        return run_sync(lambda: self._get(url))

    async def _get(self, url: str) -> Fetched:
        connector = aiohttp.TCPConnector(
            resolver=None if self.allow_private else PublicOnlyResolver(), force_close=True
        )
        headers = {"Accept": ACCEPT, "User-Agent": self.user_agent}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as session:
            return await self._follow(session, url)

    async def _follow(self, session: aiohttp.ClientSession, url: str) -> Fetched:
        seen = [url]
        current = url
        retried = False
        while True:
            if urlsplit(current).scheme not in ("http", "https"):
                return Fetched(url, "error", detail=f"not an HTTP URL: {current}")
            refused = self._refuse(current)
            if refused:
                return Fetched(url, "refused_private", detail=refused, final_url=current)
            key = registry_key(current)
            blocked = self._blocked.get(key, 0.0) - time.monotonic()
            if blocked > 0:
                detail = f"{key} asked us to wait; {blocked:.0f} s left"
                return Fetched(url, "rate_limited", detail=detail, final_url=current)
            await asyncio.sleep(self.bucket.reserve(key))
            try:
                result = await self._once(session, url, current)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                detail = f"no answer within {self.timeout:g} s"
                return Fetched(url, "timeout", detail=detail, final_url=current)
            except aiohttp.ClientError as exc:
                if isinstance(getattr(exc, "os_error", None), BlockedAddress):
                    return Fetched(url, "refused_private", detail=str(exc.os_error))  # type: ignore[attr-defined]
                return Fetched(url, "error", detail=_short(exc), final_url=current)
            if isinstance(result, Fetched):
                if result.outcome != "rate_limited" or retried:
                    return result
                wait = retry_after_seconds(result.detail)
                if wait is not None and wait <= self.max_retry_wait:
                    retried = True
                    await asyncio.sleep(wait)
                    continue
                backoff = DEFAULT_BACKOFF if wait is None else wait
                self._blocked[key] = time.monotonic() + backoff
                detail = f"HTTP 429, Retry-After {result.detail or 'absent'}: gave up for now"
                return Fetched(url, "rate_limited", detail=detail, final_url=current, status=429)
            target = urljoin(current, result)
            if target in seen:
                return Fetched(url, "redirect_loop", detail=" -> ".join([*seen, target]))
            seen.append(target)
            if len(seen) > self.max_redirects + 1:
                return Fetched(url, "too_many_redirects", detail=" -> ".join(seen))
            current = target

    async def _once(self, session: aiohttp.ClientSession, url: str, current: str) -> Fetched | str:
        """One request: a final Fetched, or the Location of a redirect."""
        async with session.get(current, allow_redirects=False) as resp:
            status = resp.status
            if status in _REDIRECTS and resp.headers.get("Location"):
                return resp.headers["Location"]
            if status == 429:
                # detail carries the raw Retry-After for the caller to interpret
                return Fetched(url, "rate_limited", detail=resp.headers.get("Retry-After"))
            if status == 404:
                return Fetched(url, "not_found", detail="HTTP 404", final_url=current, status=404)
            if status >= 500:
                return Fetched(url, "server_error", detail=f"HTTP {status}", status=status)
            if status != 200:
                return Fetched(url, "http_error", detail=f"HTTP {status}", status=status)
            length = resp.content_length
            if length is not None and length > self.max_bytes:
                detail = f"Content-Length {length} > {self.max_bytes} bytes"
                return Fetched(url, "too_large", detail=detail, final_url=current)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > self.max_bytes:
                    detail = f"more than {self.max_bytes} bytes"
                    return Fetched(url, "too_large", detail=detail, final_url=current)
        try:
            doc = json.loads(bytes(body))
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            return Fetched(url, "malformed", detail=f"not JSON ({_short(exc)})", final_url=current)
        if not isinstance(doc, dict):
            return Fetched(url, "malformed", detail="not a JSON object", final_url=current)
        return Fetched(url, "ok", doc=doc, final_url=current, status=200)

    def _refuse(self, url: str) -> str | None:
        """Why a URL must not be fetched (a non-public address literal), or None.

        ``allow_private`` admits loopback only (the local stand-in registries of tests and
        the demo): a redirect into the operator's other private ranges is still refused.
        """
        host = (urlsplit(url).hostname or "").strip("[]")
        try:
            public = is_public(host)
        except ValueError:
            return None  # a name: PublicOnlyResolver checks what it resolves to
        if public or (self.allow_private and ipaddress.ip_address(host).is_loopback):
            return None
        return f"{host} is not a public address"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
