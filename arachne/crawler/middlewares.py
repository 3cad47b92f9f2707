"""Downloader middlewares: the SSRF guard for pages (images have theirs in queue/fetch.py),
and the ``record`` robots.txt policy.

Scrapy's RedirectMiddleware turns every redirect hop into a new Request that passes
through the downloader middlewares again, so checking ``process_request`` checks every hop,
robots.txt requests included.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Request
from scrapy.statscollectors import StatsCollector
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import DNSLookupError

from arachne.queue.fetch import is_public

log = logging.getLogger(__name__)

PAGE_BLOCKED = "arachne/page_blocked"
"""Stats key: pages (or redirect hops) refused because their host is not public."""

AddressRule = Callable[[str], bool]


class PageBlocked(IgnoreRequest):
    """The page's host is (or resolves to) a non-public address; it was not requested."""


class PublicAddressGuard:
    """Refuses a request whose host is a non-public IP literal or resolves to one.

    Names are resolved with ``reactor.resolve``, i.e. through the resolver Scrapy installs
    (``DNS_RESOLVER``, cached): the connection that follows asks the same cache, so it
    connects to the address checked here rather than to a second, rebound answer.
    """

    def __init__(self, stats: StatsCollector, is_allowed: AddressRule = is_public) -> None:
        self.stats = stats
        self.is_allowed = is_allowed

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PublicAddressGuard:
        settings = crawler.settings.get("ARACHNE_SETTINGS")
        if settings is not None and settings.allow_private_networks:
            raise NotConfigured  # silently: a message would make Scrapy log a warning
        assert crawler.stats is not None
        return cls(crawler.stats)

    async def process_request(self, request: Request) -> None:
        host = (urlsplit(request.url).hostname or "").strip("[]")
        reason = await self._refusal(host)
        if reason is None:
            return
        self.stats.inc_value(PAGE_BLOCKED)
        log.warning("page refused: %s (%s)", request.url, reason)
        raise PageBlocked(reason)

    async def _refusal(self, host: str) -> str | None:
        """Why ``host`` may not be requested, or None when it may."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            return None if self.is_allowed(host) else f"{host} is not a public address"
        from twisted.internet import reactor

        try:
            ip = await maybe_deferred_to_future(reactor.resolve(host))  # type: ignore[attr-defined]
        except DNSLookupError:
            return None  # unresolvable: the download fails and is counted as a page error
        if not self.is_allowed(ip):
            return f"{host} resolves to non-public address {ip}"
        return None


class RecordingRobotsTxt(RobotsTxtMiddleware):
    """robots.txt policy ``record``: read it like Scrapy does, count (and log) each request it
    disallows, and crawl it anyway; for campaigns whose sites hide what they serve."""

    def process_request_2(self, rp: Any, request: Request) -> None:
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest:
            self.crawler.stats.inc_value("arachne/robots/disallowed_crawled")
            log.info("robots.txt disallows %s; crawled (policy: record)", request.url)
