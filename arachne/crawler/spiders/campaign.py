"""CampaignSpider: seeds + scope → follows in-scope links, yields ImageRef items."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from arachne.crawler.extensions import page_failed
from arachne.crawler.extract import extract_images, extract_links
from arachne.crawler.scope import Scope, normalize_url, trap_reason
from arachne.queue.enqueue import ImageRef


class CampaignSpider(scrapy.Spider):
    name = "campaign"

    def __init__(
        self, campaign: str, seeds: list[str], scope: Scope, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        self.seeds = list(seeds)
        self.scope = scope
        # Pages scheduled so far (normalised), so max_pages caps requests, not responses.
        self._scheduled: set[str] = set()
        self.traps_skipped = 0

    async def start(self) -> AsyncIterator[Any]:
        for seed in self.seeds:
            request = self._request(seed, depth=0)
            if request is not None:
                yield request

    def _request(self, url: str, depth: int) -> scrapy.Request | None:
        key = normalize_url(url)
        if key in self._scheduled or len(self._scheduled) >= self.scope.max_pages:
            return None
        if trap_reason(url):
            self.traps_skipped += 1
            self.crawler.stats.inc_value(f"arachne/trap/{trap_reason(url)}")
            return None
        self._scheduled.add(key)
        return scrapy.Request(
            url, callback=self.parse, errback=self.page_failed, cb_kwargs={"depth": depth}
        )

    def page_failed(self, failure: Failure) -> None:
        """A page that could not be fetched at all (after Scrapy's retries) is counted."""
        if failure.check(HttpError):
            return  # an error status: LiveStats counted it when the response arrived
        self.crawler.stats.inc_value("arachne/page_errors")
        self.crawler.signals.send_catch_log(signal=page_failed, failure=failure)

    def parse(self, response: Response, depth: int = 0) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            return
        if not self.scope.allows(response.url):
            return  # an in-scope link redirected off scope: not ours to crawl
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        # Scrapy also recognises HTML served without a Content-Type from its content.
        if not isinstance(response, HtmlResponse) and "html" not in content_type:
            return
        for url, _how in extract_images(response.selector, response.url):
            yield ImageRef(url=url, page=response.url, campaign=self.campaign)
        if depth >= self.scope.max_depth:
            return
        for link in extract_links(response.selector, response.url):
            if self.scope.allows(link):
                request = self._request(link, depth + 1)
                if request is not None:
                    yield request
