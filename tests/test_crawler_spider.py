"""CampaignSpider's decisions, driven by hand-built responses (no reactor, no network)."""

from __future__ import annotations

import asyncio

import pytest
import scrapy
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.utils.test import get_crawler

from arachne.crawler.scope import Scope
from arachne.crawler.spiders.campaign import CampaignSpider
from arachne.queue.enqueue import ImageRef

SEED = "https://site.test/"


def make_spider(
    *, max_depth: int = 3, max_pages: int = 100, seeds: list[str] | None = None
) -> CampaignSpider:
    seeds = seeds or [SEED]
    scope = Scope.for_seeds(seeds, max_depth=max_depth, max_pages=max_pages)
    crawler = get_crawler(CampaignSpider)
    spider = CampaignSpider.from_crawler(crawler, campaign="camp", seeds=seeds, scope=scope)
    assert spider.crawler is crawler
    return spider


def html_response(url: str, body: str, depth: int, content_type: str = "text/html") -> HtmlResponse:
    request = scrapy.Request(url, cb_kwargs={"depth": depth})
    return HtmlResponse(
        url,
        body=body.encode("utf-8"),
        encoding="utf-8",
        headers={"Content-Type": content_type},
        request=request,
    )


def run_parse(
    spider: CampaignSpider, response: Response
) -> tuple[list[ImageRef], list[scrapy.Request]]:
    items, requests, other = [], [], []
    for out in spider.parse(response, **response.request.cb_kwargs):
        if isinstance(out, ImageRef):
            items.append(out)
        elif isinstance(out, scrapy.Request):
            requests.append(out)
        else:
            other.append(out)
    assert other == []
    return items, requests


def links_page(*hrefs: str, images: tuple[str, ...] = ()) -> str:
    body = "".join(f'<a href="{h}">x</a>' for h in hrefs)
    body += "".join(f'<img src="{src}">' for src in images)
    return f"<html><body>{body}</body></html>"


def test_yields_image_refs_with_page_and_campaign() -> None:
    spider = make_spider()
    page = "https://site.test/gallery/index.html"
    body = """
        <img src="a.jpg">
        <img srcset="b.jpg 1x, https://cdn.other.test/c.webp 2x">
        <div style="background: url(/bg.png)"></div>
        <a href="full.png">full size</a>
    """
    items, _ = run_parse(spider, html_response(page, body, depth=0))
    assert items == [
        ImageRef(url="https://site.test/gallery/a.jpg", page=page, campaign="camp"),
        ImageRef(url="https://site.test/gallery/b.jpg", page=page, campaign="camp"),
        # Images are fetched wherever they are hosted, out of scope included.
        ImageRef(url="https://cdn.other.test/c.webp", page=page, campaign="camp"),
        ImageRef(url="https://site.test/bg.png", page=page, campaign="camp"),
        ImageRef(url="https://site.test/gallery/full.png", page=page, campaign="camp"),
    ]


def test_follows_in_scope_links_with_next_depth() -> None:
    spider = make_spider(max_depth=3)
    body = links_page(
        "/one.html",
        "https://www.site.test/two.html",  # subdomain of a seed host
        "https://other.test/out.html",  # out of scope
        "ftp://site.test/file",  # other scheme
        "mailto:abuse@site.test",
        "image.jpg",  # an image, not a page
    )
    _, requests = run_parse(spider, html_response(SEED, body, depth=1))
    assert [r.url for r in requests] == [
        "https://site.test/one.html",
        "https://www.site.test/two.html",
    ]
    for r in requests:
        assert r.cb_kwargs == {"depth": 2}
        assert r.callback == spider.parse


def test_no_links_followed_at_max_depth_but_images_still_yielded() -> None:
    spider = make_spider(max_depth=2)
    body = links_page("/deeper.html", images=("pic.jpg",))
    items, requests = run_parse(spider, html_response(SEED, body, depth=2))
    assert requests == []
    assert [i.url for i in items] == ["https://site.test/pic.jpg"]
    # One level up the same page is followed.
    items, requests = run_parse(spider, html_response(SEED, body, depth=1))
    assert [r.url for r in requests] == ["https://site.test/deeper.html"]
    assert requests[0].cb_kwargs == {"depth": 2}


def test_page_cap_stops_new_requests() -> None:
    spider = make_spider(max_pages=3)
    body = links_page(*(f"/p{i}.html" for i in range(6)))
    _, requests = run_parse(spider, html_response(SEED, body, depth=0))
    assert [r.url for r in requests] == [
        "https://site.test/p0.html",
        "https://site.test/p1.html",
        "https://site.test/p2.html",
    ]
    more = links_page(*(f"/q{i}.html" for i in range(3)), images=("still.jpg",))
    items, requests = run_parse(spider, html_response("https://site.test/p0.html", more, 1))
    assert requests == []
    assert [i.url for i in items] == ["https://site.test/still.jpg"]


def test_seeds_count_toward_the_page_cap() -> None:
    spider = make_spider(max_pages=2, seeds=[SEED, "https://site.test/b.html"])

    async def collect() -> list[scrapy.Request]:
        return [r async for r in spider.start()]

    starts = asyncio.run(collect())
    assert [r.url for r in starts] == [SEED, "https://site.test/b.html"]
    assert all(r.cb_kwargs == {"depth": 0} for r in starts)
    _, requests = run_parse(spider, html_response(SEED, links_page("/c.html"), depth=0))
    assert requests == []


def test_already_scheduled_pages_are_not_requested_again() -> None:
    spider = make_spider()
    first = links_page("/a.html?x=1&y=2", "/b.html")
    _, requests = run_parse(spider, html_response(SEED, first, depth=0))
    assert len(requests) == 2
    # Same pages again: another fragment, query in another order, upper-case host.
    again = links_page(
        "/a.html?y=2&x=1", "https://SITE.test/b.html#part", "/b.html", "/new.html", "/new.html"
    )
    _, requests = run_parse(spider, html_response("https://site.test/a.html", again, depth=1))
    assert [r.url for r in requests] == ["https://site.test/new.html"]


def test_trap_urls_are_skipped_and_counted() -> None:
    spider = make_spider()
    deep = "/" + "/".join(f"d{i}" for i in range(20))
    loop = "/cal/cal/cal/cal/cal"
    params = "/search?" + "&".join(f"f{i}=1" for i in range(20))
    body = links_page(deep, loop, params, "/fine.html")
    _, requests = run_parse(spider, html_response(SEED, body, depth=0))
    assert [r.url for r in requests] == ["https://site.test/fine.html"]
    assert spider.traps_skipped == 3
    stats = spider.crawler.stats
    assert stats.get_value("arachne/trap/path_too_deep") == 1
    assert stats.get_value("arachne/trap/repeated_path_segment") == 1
    assert stats.get_value("arachne/trap/too_many_query_params") == 1
    # A trap does not use up the page cap: it was never scheduled.
    assert spider._scheduled == {"https://site.test/fine.html"}


@pytest.mark.parametrize(
    "response",
    [
        Response(
            "https://site.test/img.jpg",
            body=b"\xff\xd8\xff\xe0" + b'<img src="x.jpg"><a href="/y">',
            headers={"Content-Type": "image/jpeg"},
        ),
        TextResponse(
            "https://site.test/data.json",
            body=b'{"x": "<img src=\\"x.jpg\\"><a href=\\"/y\\">"}',
            headers={"Content-Type": "application/json"},
        ),
        TextResponse(
            "https://site.test/notes.txt",
            body=b'<img src="x.jpg"> <a href="/y">y</a>',
            headers={"Content-Type": "text/plain"},
        ),
    ],
    ids=["binary", "json", "text"],
)
def test_non_html_responses_yield_nothing(response: Response) -> None:
    spider = make_spider()
    assert list(spider.parse(response, depth=0)) == []


def test_xhtml_content_type_is_parsed() -> None:
    spider = make_spider()
    response = html_response(
        SEED,
        links_page("/x.html", images=("a.png",)),
        depth=0,
        content_type="application/xhtml+xml; charset=utf-8",
    )
    items, requests = run_parse(spider, response)
    assert [i.url for i in items] == ["https://site.test/a.png"]
    assert [r.url for r in requests] == ["https://site.test/x.html"]


def test_a_page_redirected_off_scope_is_not_crawled() -> None:
    spider = make_spider()
    # An in-scope link answered by a redirect to another site: Scrapy hands the final URL.
    response = html_response(
        "https://elsewhere.test/landing", links_page("/more", images=("/x.jpg",)), depth=1
    )
    assert run_parse(spider, response) == ([], [])
