"""The shared, leased, per-host crawl frontier of one campaign run, in Redis.

Modelled on URLFrontier and Mercator: one queue per host (breadth-first: ordered by depth,
then by arrival), a heap of hosts by the time they may next be asked, and URLs that are
*leased*, not popped. A lease takes one of the host's request slots, shared by every
spider and worker (``arachne.queue.politeness``); the slot is freed as soon as the page's
answer is in, while the lease itself waits for the page to be confirmed. A spider
confirms a URL once everything it found there is safely queued; a URL not confirmed within
the lease time goes back to its host's queue, so a spider killed with ``kill -9`` loses
nothing and any other spider (or its restart) finishes the run. Every operation is one
Lua script, so any number of spiders on any machines sharing the Redis work one run
together without races.

Dedup is exact in practice with a known memory bound: each URL becomes an 80-bit
fingerprint, 16 bits choosing one of 65,536 Redis sets and 64 bits stored in it as an
integer. Redis keeps small integer sets as packed ``intset``s (8 bytes a member up to
``set-max-intset-entries``, 512 by default), so up to ~33 million URLs a run cost about
9 bytes each (``benchmarks/frontier.py`` measures it). Two different URLs collide with
probability n²/2⁸¹: about 4·10⁻¹¹ at 10 million URLs.

Keys (``keys.frontier(campaign, run)`` is the prefix P):
  P:entries   HASH  fingerprint → entry JSON, while queued or leased
  P:q:{host}  ZSET  fingerprint by depth·10⁹ + arrival, one per host
  P:ready     ZSET  host (with queued URLs) by the time (ms) it may next be asked
  P:leases    ZSET  fingerprint by lease expiry (ms)
  P:matched   HASH  host → time of its last match (``keys.run_matched``): served first
  P:budget    HASH  budget name → URLs admitted (pages, stylesheet, sitemap);
                    ``host:{host}`` → pages admitted on that host
  P:meta      HASH  counters: seq, added, confirmed, reclaimed, released
  P:seen:{b}  SET   fingerprints (as integers) in bucket b
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from arachne.crawler.frontier_lua import (
    ADD_SCRIPT,
    CONFIRM_SCRIPT,
    LEASE_SCRIPT,
    MATCHED_AHEAD_MS,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    UNSEEN_SCRIPT,
)
from arachne.queue import keys

SEEN_BUCKETS = 1 << 16
"""Dedup sets per run: 65,536 keeps every set an intset up to ~33 M URLs a run."""
DEPTH_WEIGHT = 1_000_000_000
"""Queue score = depth x this + arrival: breadth-first per host, FIFO within a depth."""
SEP = "\x1f"
"""Separates an entry's fields in one script argument (JSON never has it unescaped)."""


@dataclass(frozen=True)
class Entry:
    """One URL offered to the frontier: what to fetch and how to handle the answer."""

    url: str
    host: str
    depth: int = 0
    kind: str = "page"  # budget it counts against: page, stylesheet, sitemap
    data: dict[str, Any] = field(default_factory=dict)  # callback, cb_kwargs, meta
    key_url: str | None = None  # what dedup compares (the normalised URL); default: url

    @property
    def key(self) -> str:
        return fingerprint(self.kind, self.key_url or self.url)


@dataclass(frozen=True)
class Lease:
    """A URL handed to one spider; ``id`` confirms or releases it."""

    id: str
    url: str
    host: str
    depth: int
    kind: str
    data: dict[str, Any]
    tries: int = 0  # earlier leases given back for a later try (429/503)


@dataclass(frozen=True)
class Budgets:
    """How many URLs a run admits: pages in all and per host; other kinds by name."""

    pages: int = 0  # 0: no limit
    pages_per_host: int = 0
    other: dict[str, int] = field(default_factory=dict)

    def cap(self, kind: str) -> int:
        return self.pages if kind == "page" else self.other.get(kind, 0)


@dataclass
class AddResult:
    added: int = 0
    duplicate: int = 0
    capped: int = 0  # over the run's budget for the kind
    capped_host: int = 0  # over the per-host page budget


def fingerprint(kind: str, url: str) -> str:
    """``bucket:member``: 80 bits of sha1 over the kind and the (normalised) URL."""
    digest = hashlib.sha1(f"{kind}\0{url}".encode("utf-8", "surrogatepass")).digest()
    bucket = int.from_bytes(digest[:2], "big")
    member = int.from_bytes(digest[2:10], "big", signed=True)
    return f"{bucket}:{member}"


class Frontier:
    """One run's frontier. Cheap to build; every method is one round trip."""

    def __init__(
        self,
        redis: Redis,
        campaign: str,
        run: int,
        *,
        per_host: int = 4,
        delay: float = 0.0,
        lease_seconds: float = 120.0,
        budgets: Budgets | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = keys.frontier(campaign, run)
        self.control = keys.run_control(campaign, run)
        self.per_host = per_host
        self.delay_ms = int(delay * 1000)
        self.lease_ms = int(lease_seconds * 1000)
        self.budgets = budgets or Budgets()
        self._add = redis.register_script(ADD_SCRIPT)
        self._unseen = redis.register_script(UNSEEN_SCRIPT)
        self._lease = redis.register_script(LEASE_SCRIPT)
        self._confirm = redis.register_script(CONFIRM_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._renew = redis.register_script(RENEW_SCRIPT)

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def add(self, entries: Iterable[Entry]) -> AddResult:
        """Offer URLs; the run admits each once, within its budgets."""
        entries = list(entries)
        if not entries:
            return AddResult()
        # Most links a page offers were seen already: ask which are new first (one short
        # argument each), and build the full entries only for those (the add re-checks).
        fps = [e.key for e in entries]
        unseen = {int(i) for i in self._unseen(args=[self.prefix, *fps])}
        result = AddResult(duplicate=len(entries) - len(unseen))
        args: list[Any] = [self.prefix, self.now_ms(), self.control]
        for i in sorted(unseen):
            e = entries[i]
            bucket, member = fps[i].split(":")
            score = e.depth * DEPTH_WEIGHT
            payload = json.dumps(
                {"u": e.url, "h": e.host, "s": score, "d": e.depth, "k": e.kind, **e.data},
                separators=(",", ":"),
            )
            host_cap = self.budgets.pages_per_host if e.kind == "page" else 0
            host = e.host.replace(SEP, "")  # JSON escapes it in the payload; not here
            fields = (bucket, member, host, score, e.kind, self.budgets.cap(e.kind), host_cap)
            args.append(SEP.join(map(str, fields)) + SEP + payload)
        if len(args) > 3:
            added, duplicate, capped, capped_host = (int(x) for x in self._add(args=args))
            result.added, result.capped, result.capped_host = added, capped, capped_host
            result.duplicate += duplicate  # another spider added it meanwhile
        return result

    def lease(self, n: int, fetched: Sequence[str] = ()) -> list[Lease]:
        """Up to ``n`` URLs, round-robin over the hosts that may be asked now; ``fetched``
        are leases whose answer is in (their hosts' slots are freed first)."""
        raw = self._lease(
            args=[
                self.prefix,
                self.now_ms(),
                n,
                self.lease_ms,
                self.per_host,
                self.delay_ms,
                *fetched,
            ]
        )
        out = []
        for fp, payload in zip(raw[::2], raw[1::2], strict=True):
            d = json.loads(payload)
            url, host, depth, kind = d.pop("u"), d.pop("h"), d.pop("d"), d.pop("k")
            d.pop("s")
            tries = int(d.pop("t", 0))
            out.append(Lease(_s(fp), url, host, depth, kind, d, tries))
        return out

    def confirm(self, ids: Sequence[str]) -> int:
        """Done with these URLs; returns how many were still leased (not reclaimed)."""
        return int(self._confirm(args=[self.prefix, self.now_ms(), *ids])) if ids else 0

    def release(self, ids: Sequence[str], *, retry: bool = False) -> int:
        """Give leases back unfinished, queued again at once: a clean stop, or (``retry``)
        a host that asked for a later try, counted in the lease's ``tries``."""
        if not ids:
            return 0
        return int(self._release(args=[self.prefix, self.now_ms(), int(retry), *ids]))

    def renew(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(self._renew(args=[self.prefix, self.now_ms() + self.lease_ms, *ids]))

    def counts(self) -> dict[str, int]:
        """queued, leased and the run's counters (added, confirmed, reclaimed, released)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(f"{self.prefix}:entries")
        pipe.zcard(f"{self.prefix}:leases")
        pipe.hgetall(f"{self.prefix}:meta")
        pipe.hgetall(f"{self.prefix}:budget")
        entries, leased, meta, budget = pipe.execute()
        out = {_s(k): int(v) for k, v in meta.items() if _s(k) != "seq"}
        for name in ("added", "confirmed", "reclaimed", "released"):
            out.setdefault(name, 0)
        out["queued"] = int(entries) - int(leased)
        out["leased"] = int(leased)
        out.update(
            {f"budget/{_s(k)}": int(v) for k, v in budget.items() if not _s(k).startswith("host:")}
        )
        return out

    def prefer(self, hosts: Iterable[str]) -> None:
        """Serve these hosts' queues first (hosts with matches; the workers say so through
        ``RunFeedback.matched``, which writes the same key, and ``--every`` re-crawls)."""
        hosts = [h for h in hosts if h]
        if not hosts:
            return
        ahead = self.now_ms() - MATCHED_AHEAD_MS
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(f"{self.prefix}:matched", mapping={h: 0 for h in hosts})
        pipe.zadd(f"{self.prefix}:ready", {h: ahead for h in hosts}, xx=True, lt=True)
        pipe.execute()

    def drained(self) -> bool:
        """Nothing queued and nothing leased: the run's crawl is complete."""
        return int(self.redis.hlen(f"{self.prefix}:entries")) == 0

    def clear(self) -> None:
        """Delete every key of this run's frontier (a deleted campaign, a test)."""
        for chunk in _chunks(self.redis.scan_iter(match=_glob(self.prefix) + ":*", count=1000)):
            self.redis.unlink(*chunk)


def forget_campaign(redis: Redis, campaign: str) -> int:
    """Delete every Redis key of a campaign: counters, seen-sets and every run's frontier
    (a deleted campaign made again under its name must start from nothing)."""
    names = list(keys.campaign_keys(campaign))
    pattern = _glob(keys.run_prefix(campaign)) + "*"
    names += [_s(k) for k in redis.scan_iter(match=pattern, count=1000)]
    deleted = 0
    for chunk in _chunks(names):
        deleted += int(redis.unlink(*chunk))
    return deleted


def _glob(prefix: str) -> str:
    """``prefix`` as a SCAN pattern that matches itself literally (names hold any char)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


def _chunks(items: Iterable[Any], size: int = 1000) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
