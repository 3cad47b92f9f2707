"""Turns Scrapy signals into Arachne's live counters (pages crawled, page errors)."""

from __future__ import annotations

from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from twisted.python.failure import Failure

from arachne.queue import stats as st
from arachne.queue.connection import redis_from_url

page_failed = object()
"""Signal the spider sends when a page could not be downloaded (DNS, refused, timeout)."""


class LiveStats:
    def __init__(self, redis_url: str, campaign: str, run: int | None = None) -> None:
        self.stats = st.Stats(redis_from_url(redis_url), campaign, run)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LiveStats:
        s = crawler.settings
        if not s.get("ARACHNE_REDIS_URL") or not s.get("ARACHNE_CAMPAIGN"):
            raise NotConfigured("ARACHNE_REDIS_URL and ARACHNE_CAMPAIGN are required")
        ext = cls(s["ARACHNE_REDIS_URL"], s["ARACHNE_CAMPAIGN"], s.getint("ARACHNE_RUN", 1))
        crawler.signals.connect(ext.response_received, signal=signals.response_received)
        crawler.signals.connect(ext.request_failed, signal=signals.spider_error)
        crawler.signals.connect(ext.request_failed, signal=page_failed)
        return ext

    def response_received(self, response: Response, request: Request, **_: Any) -> None:
        # robots.txt (Scrapy's or the spider's), stylesheets and sitemaps are not pages.
        if request.url.endswith("/robots.txt") or request.meta.get("arachne_aux"):
            return
        if response.status < 400:
            self.stats.inc(st.PAGES_CRAWLED)
        else:
            self.stats.inc_many({st.PAGES_ERRORS: 1, f"{st.PAGE_ERROR}http_{response.status}": 1})

    def request_failed(self, failure: Failure | None = None, **_: Any) -> None:
        """A page that got no answer at all, or whose callback failed: counted by reason
        (the exception's name: TimeoutError, DNSLookupError, ...)."""
        reason = type(failure.value).__name__ if failure is not None else "unknown"
        self.stats.inc_many({st.PAGES_ERRORS: 1, st.PAGE_ERROR + reason: 1})
