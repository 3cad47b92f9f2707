"""aiohttp image fetcher: bounded concurrency per host, timeouts, a byte cap, sniffing.

Bytes stay in memory and are handed straight to the hasher; nothing here writes to disk.
Every failure becomes a ``FetchResult`` with a short reason, never an exception.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from redis import Redis
from redis.exceptions import RedisError

from arachne.queue.politeness import Answer, HostPoliteness
from arachne.settings import Settings
from arachne.urls import host_of

log = logging.getLogger(__name__)

T = TypeVar("T")

# Headers worth keeping as evidence and for contact resolution (CDN detection).
KEPT_HEADERS = (
    "server",
    "via",
    "x-cache",
    "cf-ray",
    "x-served-by",
    "x-amz-cf-id",
    "location",
    "retry-after",  # a 429/503's wish: the re-fetch waits at least that long
)

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"\x00\x00\x01\x00", "ico"),
)


def sniff_image(head: bytes) -> str | None:
    """Image format from magic bytes, whatever the server's Content-Type claims."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "heif"
    return None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _PeerResponse(aiohttp.ClientResponse):
    """Records the server's address when the response starts: ``resp.connection`` is
    already released (None) by the time a small response is handed back."""

    peer_ip: str | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.peer_ip = peer[0] if peer else None
        return await super().start(connection)


class BlockedAddress(OSError):
    """The URL's host is (or resolves to) a loopback, private or otherwise non-public
    address: fetching it would let a hostile page probe the operator's own network."""


def is_public(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses non-public addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            if not is_public(info["host"]):
                raise BlockedAddress(f"{host} resolves to non-public address {info['host']}")
        return infos

    async def close(self) -> None:
        await self._inner.close()


async def _refuse_private_literals(
    _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
) -> None:
    # Runs for every hop, redirects included; names go through PublicOnlyResolver.
    host = (params.url.host or "").strip("[]")
    try:
        public = is_public(host)
    except ValueError:
        return  # a name, checked when it is resolved
    if not public:
        raise BlockedAddress(f"{host} is not a public address")


@dataclass
class FetchResult:
    url: str
    status: int | None = None
    content: bytes | None = None
    content_type: str | None = None
    server_ip: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    detail: str | None = None
    elapsed: float = 0.0


@dataclass(frozen=True)
class FetchConfig:
    timeout: float = 20.0
    max_bytes: int = 25 * 1024 * 1024
    concurrency: int = 32
    per_host: int = 4  # in this process; ``politeness`` holds it over the whole cluster
    user_agent: str = "ArachneBot/0.1"
    allow_private: bool = False  # loopback/private targets: only for tests and the demo
    politeness: HostPoliteness | None = field(default=None, compare=False)
    host_wait_max: float = 30.0  # longer waits for a host put the URL off ("host_busy")

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> FetchConfig:
        """The one fetch configuration: workers and re-checks fetch alike, with the
        cluster's per-host slots and pacing when given the Redis that holds them."""
        politeness = None
        if redis is not None:
            politeness = HostPoliteness(
                redis,
                concurrency=settings.per_host_concurrency,
                delay=settings.per_host_delay,
                # A slot is taken just before one fetch, which cannot outlast its timeout:
                # a worker killed mid-fetch holds the host's slot this long at most.
                slot_seconds=settings.fetch_timeout + 5,
                backoff_max=settings.host_backoff_max,
            )
        return cls(
            timeout=settings.fetch_timeout,
            max_bytes=settings.fetch_max_bytes,
            concurrency=settings.fetch_concurrency,
            per_host=settings.per_host_concurrency,
            user_agent=settings.agent,
            allow_private=settings.allow_private_networks,
            politeness=politeness,
            host_wait_max=settings.host_wait_max,
        )


async def fetch_many(urls: Sequence[str], config: FetchConfig) -> list[FetchResult]:
    """Fetch every URL; results in input order (see ``fetch_then``)."""
    return await fetch_then(urls, config, _as_is)


async def _as_is(result: FetchResult) -> FetchResult:
    return result


async def fetch_then(
    urls: Sequence[str],
    config: FetchConfig,
    then: Callable[[FetchResult], Awaitable[T]],
    *,
    held: int | None = None,
) -> list[T]:
    """Fetch every URL and hand each result to ``then`` as soon as it is in, while the
    other fetches go on (a worker hashes the first images while the rest download);
    ``then``'s values in input order.

    At most ``held`` URLs (default twice the concurrency) are being fetched or waiting in
    ``then`` at once: when ``then`` falls behind, fetching waits, so a batch never holds
    more than that many bodies in memory. The timeout runs per request from the moment it
    holds one of its host's slots: waiting for a slot must not count (it would turn a slow
    host's batch into false "timeout" errors).
    """
    connector = aiohttp.TCPConnector(
        limit=config.concurrency,
        limit_per_host=0,
        ttl_dns_cache=300,
        resolver=None if config.allow_private else PublicOnlyResolver(),
    )
    traces = []
    if not config.allow_private:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(_refuse_private_literals)
        traces.append(trace)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10, config.timeout))
    headers = {"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.5"}
    slots: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(config.per_host))
    budget = asyncio.Semaphore(held or 2 * config.concurrency)

    async def one(url: str) -> T:
        # The host's slot first: a URL queued behind its busy host holds no budget that
        # another host's URL could use. The budget is held until ``then`` is done.
        async with slots[_host_key(url)]:
            await budget.acquire()
            try:
                if config.politeness is None:
                    result = await _fetch_one(session, url, config)
                else:
                    result = await _polite_fetch(session, url, config, config.politeness)
            except BaseException:
                budget.release()
                raise
        try:
            return await then(result)  # the host's slot is free again meanwhile
        finally:
            budget.release()

    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        auto_decompress=True,
        response_class=_PeerResponse,
        trace_configs=traces,
    ) as session:
        return list(await asyncio.gather(*(one(u) for u in urls)))


async def _polite_fetch(
    session: aiohttp.ClientSession, url: str, config: FetchConfig, politeness: HostPoliteness
) -> FetchResult:
    """One fetch inside one of the host's cluster-wide slots; its answer adapts the host's
    pacing. A host that asks for a longer wait than ``host_wait_max`` (Retry-After, back-off)
    is not waited for: the URL comes back as ``host_busy`` with the wait as its
    Retry-After, and the job puts it off."""
    host = host_of(url)
    token = f"{os.getpid()}:{uuid.uuid4().hex}"
    try:
        wait = await politeness.wait_for_slot(host, token, config.host_wait_max)
    except (RedisError, OSError) as exc:
        # The slots are out of reach (Redis down): fetch within this process's own per-host
        # limit rather than fail the fetch; said once a process.
        _warn_once(f"per-host slots unavailable ({exc}); this process paces hosts alone")
        return await _fetch_one(session, url, config)
    if wait:
        return FetchResult(
            url=url,
            error="host_busy",
            detail=f"{host} is paced or blocked for {wait:.0f} s more",
            headers={"retry-after": str(math.ceil(wait))},
        )
    result: FetchResult | None = None
    try:
        result = await _fetch_one(session, url, config)
        return result
    finally:
        try:
            politeness.done(host, token, _answer(result))
        except (RedisError, OSError) as exc:  # the slot expires on its own
            _warn_once(f"could not free a per-host slot ({exc})")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message.split(" (")[0] not in _warned:
        _warned.add(message.split(" (")[0])
        log.warning(message)


def _answer(result: FetchResult | None) -> Answer:
    """What the host did, for its pacing: no answer (timeout, refused) counts as 0."""
    if result is None:
        return Answer(status=0, reason="fetch failed")
    status = result.status or 0
    if result.error in ("timeout", "connection_error", "dns_error") and not result.status:
        status = 0
    retry_after = None
    if status in (429, 503):
        retry_after = retry_after_seconds(result.headers.get("retry-after"))
    return Answer(status, result.elapsed, retry_after, result.error or "")


def _host_key(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}"
    except ValueError:
        return url


async def _fetch_one(session: aiohttp.ClientSession, url: str, config: FetchConfig) -> FetchResult:
    result = FetchResult(url=url)
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(config.timeout),
            session.get(url, allow_redirects=True, max_redirects=5) as resp,
        ):
            result.status = resp.status
            result.content_type = resp.headers.get("Content-Type")
            result.headers = {h: resp.headers[h] for h in KEPT_HEADERS if h in resp.headers}
            result.server_ip = getattr(resp, "peer_ip", None)
            if resp.status >= 400:
                result.error, result.detail = f"http_{resp.status}", resp.reason
                return result
            if (resp.content_length or 0) > config.max_bytes:
                result.error = "too_large"
                result.detail = f"Content-Length {resp.content_length} > {config.max_bytes}"
                return result
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > config.max_bytes:
                    result.error, result.detail = "too_large", f"over {config.max_bytes} bytes"
                    return result
    except TimeoutError:
        result.error, result.detail = "timeout", f"no complete response in {config.timeout}s"
        return result
    except aiohttp.TooManyRedirects as exc:
        result.error, result.detail = "redirect_loop", str(exc)
        return result
    except BlockedAddress as exc:
        result.error, result.detail = "blocked_address", str(exc)
        return result
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, BlockedAddress):
            result.error, result.detail = "blocked_address", str(exc.os_error)
            return result
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            # "No such name" is an answer (a re-check counts it as removed); any other DNS
            # failure (SERVFAIL, timeout) may pass, like a refused connection.
            gone = getattr(exc.os_error, "errno", None) == socket.EAI_NONAME
            result.error, result.detail = ("nxdomain" if gone else "dns_error"), str(exc)
            return result
        result.error, result.detail = "connection_error", str(exc)
        return result
    except (aiohttp.ClientError, aiohttp.InvalidURL, ValueError) as exc:
        result.error, result.detail = "http_error", f"{type(exc).__name__}: {exc}"
        return result
    finally:
        result.elapsed = time.monotonic() - started
    if not body:
        result.error, result.detail = "empty", "empty response body"
    elif sniff_image(bytes(body[:16])) is None:
        result.error = "not_an_image"
        result.detail = f"content does not look like an image (Content-Type {result.content_type})"
    else:
        result.content = bytes(body)
    return result
