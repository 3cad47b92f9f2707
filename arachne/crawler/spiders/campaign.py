"""CampaignSpider: seeds + scope → follows in-scope links, yields ImageRef items.

Besides pages it reads what points to images without being a page: linked stylesheets
(``@import`` followed, boundedly), robots.txt ``Sitemap:`` lines, ``/sitemap.xml`` and the
sitemap indexes they name. Those are fetched only on in-scope hosts that answered a page,
each URL once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import scrapy
from protego import Protego
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import StopDownload
from scrapy.http import Headers, HtmlResponse, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from arachne.crawler.extensions import page_failed
from arachne.crawler.extract import (
    css_imports,
    css_urls,
    decode_data_uri,
    extract_data_uris,
    extract_images,
    extract_links,
    extract_stylesheets,
    parse_sitemap,
    robots_sitemaps,
)
from arachne.crawler.extract.datauri import DataURIError
from arachne.crawler.extract.urls import absolute
from arachne.crawler.frontier import Budgets
from arachne.crawler.middlewares import PageBlocked
from arachne.crawler.scheduler import (
    KIND_META,
    LEASE_META,
    TRIES_META,
    PageDone,
    crawl_delay_found,
    leases_retry,
)
from arachne.crawler.scope import Scope, trap_reason
from arachne.matcher.hashing import hash_image_bytes, hashes_to_json
from arachne.queue.connection import redis_from_url
from arachne.queue.enqueue import ImageRef, InlineImage
from arachne.queue.feedback import RunFeedback
from arachne.urls import host_of

log = logging.getLogger(__name__)

AUX_META = KIND_META
"""Request meta key marking a stylesheet/robots/sitemap fetch (its value: the kind)."""
MAX_STYLESHEETS = 2_000
"""Stylesheets fetched per run: sites share a handful, so this is only a safety bound."""
MAX_IMPORT_DEPTH = 3
"""``@import`` chains followed this deep (a.css imports b.css imports c.css)."""
MAX_SITEMAPS = 200
"""Sitemaps (robots.txt, /sitemap.xml and index entries) fetched per run."""
DATA_URI_MAX_BYTES = 25 * 1024 * 1024
"""Inline images bigger than this are counted as too large (the worker's fetch cap)."""

AUX_BUDGETS = {"stylesheet": MAX_STYLESHEETS, "sitemap": MAX_SITEMAPS}
MAX_TRIES = 3
"""A page a host answered with 429/503 is tried this often in a run (later each time: the
frontier holds the host until its Retry-After or back-off has passed)."""
RETRIED_META = "arachne_retried"
"""Request meta key: given back to the frontier for a later try (no PageDone)."""

_F = TypeVar("_F", bound=Callable[..., Iterator[Any]])


def budgets(scope: Scope) -> Budgets:
    """What the frontier admits in one run of a campaign with this scope."""
    return Budgets(
        pages=scope.max_pages, pages_per_host=scope.max_pages_per_host, other=AUX_BUDGETS
    )


def leased(handler: _F) -> _F:
    """Ends a callback's or errback's output with ``PageDone`` for the request's lease, even
    when it raised (counted and logged: one bad page must not be leased again for ever)."""

    @functools.wraps(handler)
    def wrapper(self: CampaignSpider, result: Response | Failure, **kwargs: Any) -> Iterator[Any]:
        request: scrapy.Request | None = getattr(result, "request", None)
        try:
            yield from handler(self, result, **kwargs)
        except Exception:
            self.crawler.stats.inc_value("arachne/callback_errors")
            log.exception("error handling %s", request.url if request else result)
            self.crawler.signals.send_catch_log(signal=page_failed, failure=Failure())
        lease = request.meta.get(LEASE_META) if request is not None else None
        if lease and not request.meta.get(RETRIED_META):  # type: ignore[union-attr]
            yield PageDone(lease)

    return wrapper  # type: ignore[return-value]


def _content_type(headers: Headers) -> str:
    return headers.get(b"Content-Type", b"").decode("latin-1").split(";", 1)[0].strip().lower()


def _is_raster_image(content_type: str) -> bool:
    # SVG is markup the hasher cannot read; every other image/* type goes to the workers.
    return content_type.startswith("image/") and "svg" not in content_type


class CampaignSpider(scrapy.Spider):
    name = "campaign"

    def __init__(
        self, campaign: str, seeds: list[str], scope: Scope, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        self.seeds = list(seeds)
        self.scope = scope
        # Dedup and budgets belong to the run's frontier (shared by every spider process);
        # this only spares the frontier a robots.txt/sitemap offer per page of a host.
        self._origins: set[str] = set()  # hosts whose robots.txt and sitemap were asked for
        self.traps_skipped = 0
        self.feedback: RunFeedback | None = None  # the stop rule's shared page counts
        self.data_uri_max_bytes = DATA_URI_MAX_BYTES

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> CampaignSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.headers_received, signal=signals.headers_received)
        settings = crawler.settings.get("ARACHNE_SETTINGS")
        if settings is not None:
            spider.data_uri_max_bytes = settings.fetch_max_bytes
        redis_url = crawler.settings.get("ARACHNE_REDIS_URL")
        if redis_url and spider.scope.stop_after:
            spider.feedback = RunFeedback(
                redis_from_url(redis_url),
                spider.campaign,
                crawler.settings.getint("ARACHNE_RUN", 1),
            )
        return spider

    async def start(self) -> AsyncIterator[Any]:
        for seed in self.seeds:
            request = self._request(seed, depth=0)
            if request is not None:
                yield request

    def _site_requests(self, page_url: str) -> Iterator[scrapy.Request]:
        """robots.txt and /sitemap.xml of a host, once, when its first page has answered:
        a host that is down or refused costs no extra requests."""
        parts = urlsplit(page_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin in self._origins:
            return
        self._origins.add(origin)
        for url, callback in (
            (f"{origin}/robots.txt", self.parse_robots),
            (f"{origin}/sitemap.xml", self.parse_sitemap),
        ):
            request = self._aux_request(url, "sitemap", callback)
            if request is not None:
                yield request

    def _request(self, url: str, depth: int, from_page: str | None = None) -> scrapy.Request | None:
        """A page request; the frontier drops what this run has seen or cannot afford."""
        reason = trap_reason(url)
        if reason:
            self.traps_skipped += 1
            self.crawler.stats.inc_value(f"arachne/trap/{reason}")
            return None
        return scrapy.Request(
            url,
            callback=self.parse,
            errback=self.page_failed,
            cb_kwargs={"depth": depth},
            meta={"arachne_from_page": from_page},
        )

    def _aux_request(
        self, url: str, kind: str, callback: Callable[..., Any], **cb_kwargs: Any
    ) -> scrapy.Request | None:
        """A stylesheet or sitemap request: in scope only (the crawler fetches nothing the
        operator did not scope); the frontier fetches each URL once, at most
        AUX_BUDGETS[kind] a run."""
        if not self.scope.allows(url) or trap_reason(url):
            return None
        return scrapy.Request(
            url,
            callback=callback,
            errback=self.aux_failed,
            cb_kwargs=cb_kwargs,
            priority=1,
            meta={AUX_META: kind},  # not a page: LiveStats does not count it as one
        )

    def headers_received(
        self, headers: Headers, body_length: int, request: scrapy.Request, **_: Any
    ) -> None:
        """A page link answered with an image: stop the download, parse() yields its URL
        and the worker fetches it (under its own size cap and address guard)."""
        if request.callback == self.parse and _is_raster_image(_content_type(headers)):
            raise StopDownload(fail=False)

    @leased
    def page_failed(self, failure: Failure) -> Iterator[Any]:
        """A page that could not be fetched at all (after Scrapy's retries) is counted."""
        if failure.check(HttpError):
            # An error status (LiveStats counted it when the response arrived). 429 and
            # 503 say "later": the page goes back to the frontier, which waits for the host.
            status = failure.value.response.status
            if status in (429, 503):
                self._try_later(failure.request)
            return
        if failure.check(PageBlocked):
            return  # refused by the address guard, which counted it as page_blocked
        self.crawler.stats.inc_value("arachne/page_errors")
        self.crawler.signals.send_catch_log(signal=page_failed, failure=failure)
        yield from ()

    def _try_later(self, request: scrapy.Request) -> None:
        lease, tries = request.meta.get(LEASE_META), int(request.meta.get(TRIES_META, 0))
        if not lease or tries + 1 >= MAX_TRIES:
            self.crawler.stats.inc_value("arachne/page_gave_up")
            return
        request.meta[RETRIED_META] = True
        self.crawler.stats.inc_value("arachne/page_try_later")
        self.crawler.signals.send_catch_log(signal=leases_retry, leases=[lease])

    @leased
    def aux_failed(self, failure: Failure) -> Iterator[Any]:
        """A missing sitemap or stylesheet is common and no page error."""
        self.crawler.stats.inc_value("arachne/aux_errors")
        yield from ()

    def _ref(self, url: str, page: str | None) -> ImageRef:
        return ImageRef(url=url, page=page, campaign=self.campaign)

    @leased
    def parse(self, response: Response, depth: int = 0) -> Iterator[Any]:
        if _is_raster_image(_content_type(response.headers)):
            # A link without an image extension that serves an image (found by its
            # Content-Type): an image of the page that linked it, wherever it redirected.
            self.crawler.stats.inc_value("arachne/image_by_content_type")
            if "download_stopped" in response.flags:
                self.crawler.stats.inc_value("arachne/image_by_content_type/stopped")
            meta = response.request.meta if response.request is not None else {}
            yield self._ref(response.url, meta.get("arachne_from_page"))
            return
        if not isinstance(response, TextResponse):
            return
        if not self.scope.allows(response.url):
            return  # an in-scope link redirected off scope: not ours to crawl
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        # Scrapy also recognises HTML served without a Content-Type from its content.
        if not isinstance(response, HtmlResponse) and "html" not in content_type:
            return
        yield from self._site_requests(response.url)
        for url, _how in extract_images(response.selector, response.url):
            yield self._ref(url, response.url)
        yield from self._inline_images(response)
        for css in extract_stylesheets(response.selector, response.url):
            request = self._aux_request(
                css, "stylesheet", self.parse_css, page=response.url, import_depth=0
            )
            if request is not None:
                yield request
        if depth >= self.scope.max_depth or self._stopped(response.url):
            return
        for link in extract_links(response.selector, response.url):
            if self.scope.allows(link):
                request = self._request(link, depth + 1, from_page=response.url)
                if request is not None:
                    yield request

    def _stopped(self, page_url: str) -> bool:
        """The stop rule: a host that gave ``scope.stop_after`` pages in a row without a
        match (as far as the workers have matched) has its links no longer followed."""
        if not self.scope.stop_after or self.feedback is None:
            return False
        host = host_of(page_url)
        self.feedback.crawled(host)
        if self.feedback.pages_without_match(host) < self.scope.stop_after:
            return False
        self.crawler.stats.inc_value("arachne/stop_rule/pages_not_followed")
        return True

    def _inline_images(self, response: TextResponse) -> Iterator[InlineImage]:
        """Images embedded as ``data:`` URIs are decoded and hashed here, in memory: only
        their hashes go to the workers (a URI as a job would carry the bytes into Redis)."""
        stats = self.crawler.stats
        for uri, _how in extract_data_uris(response.selector):
            try:
                media_type, data = decode_data_uri(uri, self.data_uri_max_bytes)
            except DataURIError as exc:
                stats.inc_value(f"arachne/data_uri/{exc.reason}")
                continue
            stats.inc_value("arachne/data_uri/images")
            hashes = hash_image_bytes(data, max_bytes=self.data_uri_max_bytes, reference=False)
            del data  # the bytes end here
            yield InlineImage(
                url=f"data:{media_type};sha256,{hashes.sha256}",
                page=response.url,
                campaign=self.campaign,
                hashes=hashes_to_json(hashes),
            )

    @leased
    def parse_css(self, response: Response, page: str, import_depth: int) -> Iterator[Any]:
        """A linked stylesheet: its url()s resolve against the stylesheet's own URL."""
        if not isinstance(response, TextResponse):
            return
        text = response.text
        for raw in css_urls(text):
            url = absolute(response.url, raw)
            if url:
                yield self._ref(url, page)
        if import_depth >= MAX_IMPORT_DEPTH:
            return
        for raw in css_imports(text):
            url = absolute(response.url, raw)
            request = url and self._aux_request(
                url, "stylesheet", self.parse_css, page=page, import_depth=import_depth + 1
            )
            if request:
                yield request

    @leased
    def parse_robots(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            return
        # Under policies obey and record, Scrapy's robots.txt middleware read it first and
        # the scheduler took its Crawl-delay (robots_parsed); under ignore, only we read it.
        delay = None
        if self.scope.robots == "ignore":
            agent = self.crawler.settings.get("USER_AGENT") or "*"
            try:
                delay = Protego.parse(response.text).crawl_delay(agent)
            except Exception:  # a robots.txt Protego cannot read has no delay for us
                delay = None
        if delay:
            self.crawler.signals.send_catch_log(
                signal=crawl_delay_found, host=host_of(response.url), seconds=float(delay)
            )
        for raw in robots_sitemaps(response.text):
            url = absolute(response.url, raw)
            request = url and self._aux_request(url, "sitemap", self.parse_sitemap)
            if request:
                yield request

    @leased
    def parse_sitemap(self, response: Response) -> Iterator[Any]:
        """Image sitemaps give images, page entries are crawled (in scope, as depth 1
        pages: the site lists them as reachable from its root), indexes are followed."""
        sitemap = parse_sitemap(response.body)
        for raw, page in sitemap.images:
            url = absolute(response.url, raw)
            if url:
                page_url = absolute(response.url, page) if page else None
                yield self._ref(url, page_url or response.url)
        if self.scope.max_depth >= 1:
            for raw in sitemap.pages:
                url = absolute(response.url, raw)
                if url and self.scope.allows(url):
                    request = self._request(url, 1, from_page=response.url)
                    if request is not None:
                        yield request
        for raw in sitemap.sitemaps:
            url = absolute(response.url, raw)
            request = url and self._aux_request(url, "sitemap", self.parse_sitemap)
            if request:
                yield request
