"""Turns Scrapy signals into Arachne's live counters (pages crawled, page errors)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from twisted.internet import task
from twisted.python.failure import Failure

from arachne.queue import stats as st
from arachne.queue.connection import redis_from_url

page_failed = object()
"""Signal the spider sends when a page could not be downloaded (DNS, refused, timeout)."""


FLUSH_SECONDS = 0.5
"""Counts are written to Redis this often (one round trip), not once per page."""


class LiveStats:
    def __init__(self, redis_url: str, campaign: str, run: int | None = None) -> None:
        self.stats = st.Stats(redis_from_url(redis_url), campaign, run)
        self._pending: Counter[str] = Counter()
        self._timer = task.LoopingCall(self.flush)

    def spider_opened(self, **_: Any) -> None:
        self._timer.start(FLUSH_SECONDS, now=False)

    def spider_closed(self, **_: Any) -> None:
        if self._timer.running:
            self._timer.stop()
        self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        try:
            self.stats.inc_many(pending)
        except Exception:  # Redis unreachable: keep the counts for the next flush
            self._pending.update(pending)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LiveStats:
        s = crawler.settings
        if not s.get("ARACHNE_REDIS_URL") or not s.get("ARACHNE_CAMPAIGN"):
            raise NotConfigured("ARACHNE_REDIS_URL and ARACHNE_CAMPAIGN are required")
        ext = cls(s["ARACHNE_REDIS_URL"], s["ARACHNE_CAMPAIGN"], s.getint("ARACHNE_RUN", 1))
        crawler.signals.connect(ext.response_received, signal=signals.response_received)
        crawler.signals.connect(ext.request_failed, signal=signals.spider_error)
        crawler.signals.connect(ext.request_failed, signal=page_failed)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def response_received(self, response: Response, request: Request, **_: Any) -> None:
        # robots.txt (Scrapy's or the spider's), stylesheets and sitemaps are not pages.
        if request.url.endswith("/robots.txt") or request.meta.get("arachne_aux"):
            return
        if response.status < 400:
            self._pending[st.PAGES_CRAWLED] += 1
        else:
            self._pending.update({st.PAGES_ERRORS: 1, f"{st.PAGE_ERROR}http_{response.status}": 1})

    def request_failed(self, failure: Failure | None = None, **_: Any) -> None:
        """A page that got no answer at all, or whose callback failed: counted by reason
        (the exception's name: TimeoutError, DNSLookupError, ...)."""
        reason = type(failure.value).__name__ if failure is not None else "unknown"
        self._pending.update({st.PAGES_ERRORS: 1, st.PAGE_ERROR + reason: 1})
