"""FrontierScheduler: Scrapy's scheduler replaced by the run's shared frontier in Redis.

New requests become frontier entries (deduplicated, budgeted, per host); the scheduler
leases a few at a time for this process's downloader. A leased request carries its lease
id in ``meta``; a retry or redirect of it stays in this process under the same lease.

A lease is confirmed only when the page is fully handled: its callback (wrapped by the
spider) ends with a ``PageDone`` item; the queue pipeline sees it after the page's image
references, enqueues them, then sends ``leases_done``; the scheduler first writes the
links it still buffers to the frontier, then confirms. So a process killed at any moment
leaves every URL it had not finished leased, and the lease runs out and hands it to
another spider (at least once, never lost).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadTimeoutError
from scrapy.utils.defer import deferred_from_coro
from twisted.internet import error, task
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived

from arachne.crawler.extensions import page_failed
from arachne.crawler.frontier import Budgets, Entry, Frontier, Lease
from arachne.crawler.scope import normalize_url
from arachne.queue import keys
from arachne.queue.connection import redis_from_url
from arachne.queue.fetch import retry_after_seconds
from arachne.queue.politeness import SLOW_ANSWER_MS, Answer, HostPoliteness
from arachne.urls import host_of

if TYPE_CHECKING:
    from scrapy import Spider

log = logging.getLogger(__name__)

LEASE_META = "arachne_lease"
"""Request meta key: the frontier lease id the request works under."""
KIND_META = "arachne_aux"
"""Request meta key: what a non-page request fetches (stylesheet, sitemap)."""
leases_done = object()
"""Signal (``leases=[ids]``): these leases' results are queued; confirm them."""
leases_retry = object()
"""Signal (``leases=[ids]``): the host asked us to come back later (429/503): give these
back to the frontier, which holds the host until its Retry-After or back-off has passed."""
crawl_delay_found = object()
"""Signal (``host``, ``seconds``): robots.txt asks for this Crawl-delay."""
NO_ANSWER = (
    DownloadTimeoutError,
    TimeoutError,
    error.TimeoutError,
    error.TCPTimedOutError,
    error.ConnectionRefusedError,
    error.ConnectionLost,
    ResponseNeverReceived,
)
"""Failures that mean the host did not answer (it backs off), as Scrapy's retry sees them."""
TRIES_META = "arachne_tries"
"""Request meta key: how often this URL was given back for a later try (429/503)."""

ADD_BUFFER = 200
"""Links buffered before one round trip writes them to the frontier."""
TICK_SECONDS = 0.05
"""How often the scheduler refills from the frontier, renews leases, checks for the end."""
EMPTY_BACKOFF = 0.05
"""Seconds between lease calls while the frontier has nothing ready for this process."""


@dataclass(frozen=True)
class PageDone:
    """The last output of a leased request's callback or errback."""

    lease: str


class FrontierScheduler:
    def __init__(
        self,
        crawler: Crawler,
        frontier: Frontier,
        politeness: HostPoliteness,
        *,
        batch: int = 16,
        crawl_delay_cap: float = 30.0,
    ) -> None:
        self.crawler = crawler
        self.frontier = frontier
        self.politeness = politeness
        self.crawl_delay_cap = crawl_delay_cap
        self._backing_off: set[str] = set()  # hosts whose answers still adapt their pacing
        self.batch = batch
        self._local: deque[Request] = deque()  # leased, waiting for the downloader
        self._adds: list[Entry] = []
        self._held: set[str] = set()  # leases of this process not yet confirmed
        self._fetched: list[str] = []  # held leases whose answer is in: free their slots
        self._last_empty = 0.0
        self._last_renew = time.monotonic()
        self._drained = False
        self._control: str | None = None  # "paused" / "cancelled" by an operator
        self._last_error = 0.0
        self._tick: task.LoopingCall | None = None
        self.spider: Spider | None = None
        self.control_key = ""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FrontierScheduler:
        s = crawler.settings
        settings = s["ARACHNE_SETTINGS"]
        budgets = s.get("ARACHNE_BUDGETS") or Budgets()
        redis = redis_from_url(s["ARACHNE_REDIS_URL"])
        frontier = Frontier(
            redis,
            s["ARACHNE_CAMPAIGN"],
            s.getint("ARACHNE_RUN", 1),
            per_host=settings.per_host_concurrency,
            delay=settings.per_host_delay,
            lease_seconds=settings.crawl_lease_seconds,
            budgets=budgets,
        )
        politeness = HostPoliteness(
            redis,
            concurrency=settings.per_host_concurrency,
            delay=settings.per_host_delay,
            slot_seconds=settings.crawl_lease_seconds,
            backoff_max=settings.host_backoff_max,
        )
        scheduler = cls(
            crawler,
            frontier,
            politeness,
            batch=s.getint("CONCURRENT_REQUESTS"),
            crawl_delay_cap=settings.crawl_delay_cap,
        )
        scheduler.control_key = keys.run_control(s["ARACHNE_CAMPAIGN"], s.getint("ARACHNE_RUN", 1))
        connect = crawler.signals.connect
        connect(scheduler.confirm, signal=leases_done)
        connect(scheduler.retry_later, signal=leases_retry)
        connect(scheduler.crawl_delay, signal=crawl_delay_found)
        connect(scheduler.robots_parsed, signal=signals.robots_parsed)
        connect(scheduler.response_received, signal=signals.response_received)
        connect(scheduler.download_failed, signal=page_failed)
        return scheduler

    # --- Scrapy's scheduler interface --------------------------------------------------
    def open(self, spider: Spider) -> None:
        self.spider = spider
        self._tick = task.LoopingCall(self._safe_tick)
        self._tick.start(TICK_SECONDS, now=False)

    def close(self, reason: str) -> None:
        if self._tick is not None and self._tick.running:
            self._tick.stop()
        self._flush_adds()
        # A clean stop gives unfinished leases straight back instead of letting them expire.
        released = self.frontier.release(sorted(self._held))
        if released:
            log.info("gave %d unfinished URLs back to the frontier", released)
        self._held.clear()
        # Run-wide figures (every spider of the run): URLs admitted per kind.
        for key, value in self.frontier.counts().items():
            if key.startswith("budget/"):
                self.crawler.stats.set_value(f"arachne/{key[7:]}/requested", value)

    def has_pending_requests(self) -> bool:
        if self._control == "paused":
            return True  # idle, not finished: the spider waits for a resume
        return bool(self._local or self._adds or self._held) or not self._drained

    def enqueue_request(self, request: Request) -> bool:
        if LEASE_META in request.meta:  # a retry or redirect of a leased URL: ours to finish
            self._local.append(request)
            return True
        self._adds.append(self._entry(request))
        if len(self._adds) >= ADD_BUFFER:
            self._flush_adds()
        return True

    def next_request(self) -> Request | None:
        if not self._local:
            self._refill()
        return self._local.popleft() if self._local else None

    # --- the frontier side -------------------------------------------------------------
    def response_received(self, response: Any, request: Request, **_: Any) -> None:
        """The final answer (redirects and retries happen below the engine) is in: the
        host's slot is free for the next fetch, whether or not the page is confirmed yet."""
        lease = request.meta.get(LEASE_META)
        if lease:
            self._fetched.append(lease)
        header = response.headers.get(b"Retry-After")
        self._observe(
            request.url,
            Answer(
                status=response.status,
                latency=float(request.meta.get("download_latency") or 0.0),
                retry_after=(
                    retry_after_seconds(header.decode("latin-1"))
                    if header and response.status in (429, 503)
                    else None
                ),
            ),
        )

    def download_failed(self, failure: Failure, **_: Any) -> None:
        """No answer at all (timeout, refused, reset): the host backs off. Our own cut-offs
        (a page over the size cap, a gzip bomb, a redirect loop) and a name that does not
        resolve say nothing about the host's load, and leave its pacing alone."""
        request = getattr(failure, "request", None)
        if request is not None and failure.check(*NO_ANSWER):
            self._observe(request.url, Answer(status=0, reason=type(failure.value).__name__))

    def _observe(self, url: str, answer: Answer) -> None:
        # Good answers only matter to a host that is backing off (they shorten its gap).
        troubled = answer.status in (0, 429) or answer.status >= 500
        slow = answer.latency * 1000 > SLOW_ANSWER_MS
        host = host_of(url)
        if not (troubled or slow or host in self._backing_off):
            return
        if self.politeness.done(host, None, answer) > 0 or answer.retry_after:
            self._backing_off.add(host)
        else:
            self._backing_off.discard(host)

    def retry_later(self, leases: list[str], **_: Any) -> None:
        """``leases_retry``: back to the frontier, counted as a try."""
        self._inc(
            "arachne/frontier/retried", self.frontier.release(self._claim(leases), retry=True)
        )

    def robots_parsed(self, robotparser: Any, request: Request, **_: Any) -> None:
        """Scrapy read a host's robots.txt before its first request (policies obey and
        record): its Crawl-delay for us paces every request after it."""
        agent = self.crawler.settings.get("USER_AGENT") or "*"
        delay = robotparser.crawl_delay(agent) if robotparser is not None else None
        if delay:
            self.crawl_delay(host_of(request.url), float(delay))

    def crawl_delay(self, host: str, seconds: float, **_: Any) -> None:
        capped = min(seconds, self.crawl_delay_cap)
        self.politeness.set_crawl_delay(host, capped)
        log.info(
            "robots.txt of %s asks for Crawl-delay %.1f s (%.1f s used)", host, seconds, capped
        )

    def confirm(self, leases: list[str], **_: Any) -> None:
        """``leases_done``: the pages' links go to the frontier first, then the confirm."""
        ids = self._claim(leases)
        confirmed = self.frontier.confirm(ids)
        if confirmed < len(ids):  # a lease ran out meanwhile: another spider has it too
            self._inc("arachne/frontier/lease_expired", len(ids) - confirmed)

    def _claim(self, leases: list[str]) -> list[str]:
        """The held ones among ``leases``, no longer held; the links this process still
        buffers are written first (they came from those pages)."""
        self._flush_adds()
        ids = [lease for lease in leases if lease in self._held]
        self._held.difference_update(ids)
        return ids

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # Redis unreachable: keep what we hold, try again
            now = time.monotonic()
            if now - self._last_error > 10:
                log.warning("frontier unreachable (%s); retrying", exc)
                self._last_error = now

    def tick(self) -> None:
        self._read_control()
        self._flush_adds()
        now = time.monotonic()
        if self._held and now - self._last_renew > self.frontier.lease_ms / 3000:
            self.frontier.renew(sorted(self._held))
            self._last_renew = now
        drained = not self._held and not self._local and self.frontier.drained()
        if drained and not self._drained:
            self._wake_engine()  # it closes the spider when it sees it idle
        self._drained = drained
        if self._local or self.crawler.engine is None:
            if self._fetched:
                self.frontier.lease(0, self._take_fetched())
            return
        # Wake the engine for what the frontier has now (it otherwise polls every 5 s).
        for request in self._refill():
            self._local.remove(request)
            self.crawler.engine.crawl(request)

    def _read_control(self) -> None:
        raw = self.frontier.redis.get(self.control_key)
        control = raw.decode() if raw else None
        if control != self._control:
            log.warning("run %s", control or "resumed")
            self._control = control
            if control == "cancelled":
                self._held.clear()  # its frontier is cleared: nothing to confirm or give back
                if self.crawler.engine is not None:
                    deferred_from_coro(self.crawler.engine.close_spider_async(reason="cancelled"))

    def _refill(self) -> list[Request]:
        if self._control is not None:  # paused or cancelled: no new requests
            return []
        # Links just found may be the only work left (the end of a crawl): written first,
        # they are leased now rather than at the next tick.
        if not self._flush_adds() and time.monotonic() - self._last_empty < EMPTY_BACKOFF:
            return []
        # Only what the downloader can start now: a lease parked here holds its host's
        # slot, which another spider process could be using.
        engine = self.crawler.engine
        active = len(engine.downloader.active) if engine is not None else 0
        leases = self.frontier.lease(max(1, self.batch - active), self._take_fetched())
        if not leases:
            self._last_empty = time.monotonic()
            return []
        requests = [self._request(lease) for lease in leases]
        self._held.update(lease.id for lease in leases)
        self._local.extend(requests)
        self._inc("arachne/frontier/leased", len(leases))
        return requests

    def _take_fetched(self) -> list[str]:
        fetched, self._fetched = self._fetched, []
        return fetched

    def _wake_engine(self) -> None:
        # Scrapy looks at the scheduler again after a download, a new request, or its 5 s
        # heartbeat; a frontier that just drained would otherwise wait for the heartbeat.
        slot = getattr(self.crawler.engine, "_slot", None)
        nextcall = getattr(slot, "nextcall", None)
        if nextcall is not None:
            nextcall.schedule()

    def _flush_adds(self) -> int:
        """Write the buffered links to the frontier; how many were new."""
        if self._control == "cancelled":  # its frontier is gone: nothing goes back in
            self._adds.clear()
            return 0
        if not self._adds:
            return 0
        adds, self._adds = self._adds, []
        result = self.frontier.add(adds)
        self._drained = self._drained and not result.added
        self._inc("arachne/frontier/added", result.added)
        self._inc("arachne/frontier/duplicate", result.duplicate)
        self._inc("arachne/frontier/capped", result.capped)
        self._inc("arachne/frontier/capped_host", result.capped_host)
        return result.added

    def _inc(self, key: str, n: int) -> None:
        if n and self.crawler.stats is not None:
            self.crawler.stats.inc_value(key, n)

    # --- requests ↔ entries ------------------------------------------------------------
    def _entry(self, request: Request) -> Entry:
        kind = request.meta.get(KIND_META) or "page"
        data: dict[str, Any] = {
            "cb": _name(request.callback),
            "eb": _name(request.errback),
            "kw": request.cb_kwargs,
            "m": {k: v for k, v in request.meta.items() if k.startswith("arachne_")},
        }
        return Entry(
            url=request.url,
            host=host_of(request.url),
            depth=int(request.cb_kwargs.get("depth", 0)) if kind == "page" else 0,
            kind=kind,
            data=data,
            key_url=normalize_url(request.url),
        )

    def _request(self, lease: Lease) -> Request:
        spider = self.spider
        assert spider is not None
        d = lease.data
        meta = {**d.get("m", {}), LEASE_META: lease.id, TRIES_META: lease.tries}
        return Request(
            lease.url,
            callback=getattr(spider, d["cb"]) if d.get("cb") else None,
            errback=getattr(spider, d["eb"]) if d.get("eb") else None,
            cb_kwargs=d.get("kw") or {},
            meta=meta,
            dont_filter=True,
        )


def _name(method: Any) -> str | None:
    """A spider method by name (entries are JSON); anything else is not allowed."""
    if method is None:
        return None
    name = getattr(method, "__name__", None)
    if name is None or getattr(method, "__self__", None) is None:
        raise ValueError(f"frontier requests need spider methods as callbacks, not {method!r}")
    return str(name)
