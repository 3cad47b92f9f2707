"""CampaignSpider's decisions, driven by hand-built responses (no reactor, no network)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io

import pytest
import scrapy
from scrapy.exceptions import StopDownload
from scrapy.http import Headers, HtmlResponse, Response, TextResponse
from scrapy.utils.test import get_crawler

from arachne.crawler.scope import Scope
from arachne.crawler.spiders.campaign import MAX_IMPORT_DEPTH, CampaignSpider
from arachne.queue.enqueue import ImageRef, InlineImage

SEED = "https://site.test/"


def make_png() -> bytes:
    """A small benign generated picture."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


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
    """(images, page requests); robots.txt, sitemap and stylesheet requests are left out."""
    items, requests, other = [], [], []
    for out in spider.parse(response, **response.request.cb_kwargs):
        if isinstance(out, ImageRef):
            items.append(out)
        elif isinstance(out, scrapy.Request):
            if out.callback == spider.parse:
                requests.append(out)
        else:
            other.append(out)
    assert [o for o in other if not isinstance(o, InlineImage)] == []
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


def test_every_in_scope_link_is_offered_dedup_and_caps_are_the_frontiers() -> None:
    # The spider offers each link; the run's frontier (test_crawler_frontier.py) drops what
    # the run has seen and what its budgets cannot afford, for every spider process at once.
    spider = make_spider(max_pages=1)
    body = links_page("/p0.html", "/p0.html", "/p1.html")
    _, requests = run_parse(spider, html_response(SEED, body, depth=0))
    assert [r.url for r in requests] == ["https://site.test/p0.html", "https://site.test/p1.html"]


def test_leased_page_ends_with_page_done_even_when_its_callback_fails() -> None:
    from arachne.crawler.scheduler import LEASE_META, PageDone

    spider = make_spider()
    request = scrapy.Request(SEED, cb_kwargs={"depth": 0}, meta={LEASE_META: "7:42"})
    page = HtmlResponse(SEED, body=b'<img src="a.jpg">', encoding="utf-8", request=request)
    out = list(spider.parse(page, depth=0))
    assert [o.url for o in out if isinstance(o, ImageRef)] == ["https://site.test/a.jpg"]
    assert out[-1] == PageDone("7:42")
    # A parser that raises must not leave the page leased for ever (re-crawled in a loop).
    broken = HtmlResponse(SEED, body=b"<html></html>", encoding="utf-8", request=request)
    out = list(spider.parse(broken, depth="not a number"))  # type: ignore[arg-type]
    assert out == [PageDone("7:42")]
    assert spider.crawler.stats.get_value("arachne/callback_errors") == 1
    # Without a lease (a hand-made request) nothing extra is yielded.
    assert all(not isinstance(o, PageDone) for o in spider.parse(html_response(SEED, "", 0)))


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


@pytest.mark.parametrize(
    "response",
    [
        Response(
            "https://site.test/file.bin",
            body=b"\x00\x01" + b'<img src="x.jpg"><a href="/y">',
            headers={"Content-Type": "application/octet-stream"},
        ),
        Response(
            "https://site.test/logo",
            body=b'<svg><image href="x.png"/></svg>',
            headers={"Content-Type": "image/svg+xml"},
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
    ids=["binary", "svg", "json", "text"],
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


# --- images by Content-Type, stylesheets, sitemaps, data: URIs ------------------------------


def split(outputs: list[object]) -> tuple[list[ImageRef], list[scrapy.Request]]:
    items = [o for o in outputs if isinstance(o, ImageRef)]
    requests = [o for o in outputs if isinstance(o, scrapy.Request)]
    assert len(items) + len(requests) == len(outputs)
    return items, requests


def test_a_page_link_answered_with_an_image_is_an_image_ref() -> None:
    spider = make_spider()
    _, requests = run_parse(spider, html_response(SEED, links_page("/download?id=7"), 0))
    (request,) = requests
    # Its headers stop the download: the worker fetches the image, not Scrapy.
    with pytest.raises(StopDownload):
        spider.headers_received(
            headers=Headers({"Content-Type": "image/png"}), body_length=10**8, request=request
        )
    for ctype in ("text/html", "image/svg+xml", "application/octet-stream"):
        spider.headers_received(
            headers=Headers({"Content-Type": ctype}), body_length=1, request=request
        )
    # Stylesheet and sitemap requests are not pages: an image there is not stopped.
    css = scrapy.Request("https://site.test/a.css", callback=spider.parse_css)
    spider.headers_received(
        headers=Headers({"Content-Type": "image/png"}), body_length=1, request=css
    )
    response = Response(
        "https://site.test/download?id=7",
        body=b"",
        headers={"Content-Type": "image/png"},
        request=request,
        flags=["download_stopped"],
    )
    assert list(spider.parse(response, depth=1)) == [
        ImageRef(url="https://site.test/download?id=7", page=SEED, campaign="camp")
    ]


def test_each_answering_host_is_asked_for_robots_and_sitemap_once() -> None:
    spider = make_spider(seeds=[SEED, "http://www.site.test:8080/"])

    async def collect() -> list[scrapy.Request]:
        return [r async for r in spider.start()]

    # Nothing before a page of the host has answered (a dead or refused seed costs nothing).
    assert all(r.callback == spider.parse for r in asyncio.run(collect()))

    def aux(url: str) -> list[tuple[str, object]]:
        out = spider.parse(html_response(url, links_page(), depth=0), depth=0)
        return [(r.url, r.callback) for r in out if isinstance(r, scrapy.Request)]

    assert aux(SEED) == [
        ("https://site.test/robots.txt", spider.parse_robots),
        ("https://site.test/sitemap.xml", spider.parse_sitemap),
    ]
    assert aux("https://site.test/other.html") == []
    assert aux("http://www.site.test:8080/x") == [
        ("http://www.site.test:8080/robots.txt", spider.parse_robots),
        ("http://www.site.test:8080/sitemap.xml", spider.parse_sitemap),
    ]


def test_linked_stylesheets_in_scope_once_each() -> None:
    spider = make_spider()
    head = (
        '<link rel="stylesheet" href="/css/a.css"><link rel="stylesheet" href="/css/a.css?">'
        '<link rel="stylesheet" href="https://cdn.other.test/x.css">'
        '<style>@import "/css/b.css";</style>'
    )
    page = f"<html><head>{head}</head><body></body></html>"
    out = list(spider.parse(html_response(SEED, page, depth=0), depth=0))
    css = [r for r in out if isinstance(r, scrapy.Request) and r.callback == spider.parse_css]
    assert [r.url for r in css] == ["https://site.test/css/a.css", "https://site.test/css/b.css"]
    assert css[0].cb_kwargs == {"page": SEED, "import_depth": 0}
    # At max depth stylesheets are still offered (the frontier fetches each once a run).
    again = spider.parse(html_response("https://site.test/x.html", page, depth=3), depth=3)
    assert [o.url for o in again if isinstance(o, scrapy.Request)] == [r.url for r in css]


def test_stylesheet_urls_resolve_against_it_and_imports_are_bounded() -> None:
    spider = make_spider()
    body = b'@import "more.css"; .a { background: url(../img/a.png) } .b { background: url(b.gif) }'
    request = scrapy.Request("https://site.test/css/x/main.css")
    response = TextResponse(
        request.url, body=body, headers={"Content-Type": "text/css"}, request=request
    )
    items, requests = split(list(spider.parse_css(response, page=SEED, import_depth=0)))
    assert items == [
        ImageRef(url="https://site.test/css/img/a.png", page=SEED, campaign="camp"),
        ImageRef(url="https://site.test/css/x/b.gif", page=SEED, campaign="camp"),
    ]
    assert [(r.url, r.cb_kwargs["import_depth"]) for r in requests] == [
        ("https://site.test/css/x/more.css", 1)
    ]
    deep = list(spider.parse_css(response, page=SEED, import_depth=MAX_IMPORT_DEPTH))
    assert all(isinstance(o, ImageRef) for o in deep) and len(deep) == 2


def test_robots_and_sitemaps_in_scope_only() -> None:
    spider = make_spider(max_depth=3)
    robots = TextResponse(
        "https://site.test/robots.txt",
        body=b"Sitemap: https://site.test/index.xml\nSitemap: https://other.test/s.xml\n",
        headers={"Content-Type": "text/plain"},
    )
    _, requests = split(list(spider.parse_robots(robots)))
    assert [r.url for r in requests] == ["https://site.test/index.xml"]
    ns = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
    index = Response(
        "https://site.test/index.xml",
        body=(
            b"<sitemapindex><sitemap><loc>/pages.xml</loc></sitemap>"
            b"<sitemap><loc>https://other.test/x.xml</loc></sitemap>"
            b"<sitemap><loc>https://site.test/index.xml</loc></sitemap></sitemapindex>"
        ),
    )
    _, requests = split(list(spider.parse_sitemap(index)))
    # The index names itself again: offered, and the frontier drops it as seen this run.
    assert [r.url for r in requests] == [
        "https://site.test/pages.xml",
        "https://site.test/index.xml",
    ]
    urlset = Response(
        "https://site.test/pages.xml",
        body=(
            f"<urlset {ns}><url><loc>https://site.test/p.html</loc><image:image><image:loc>"
            "https://cdn.other.test/i.jpg</image:loc></image:image></url>"
            "<url><loc>https://other.test/out.html</loc></url></urlset>"
        ).encode(),
    )
    items, requests = split(list(spider.parse_sitemap(urlset)))
    assert items == [
        ImageRef(
            url="https://cdn.other.test/i.jpg", page="https://site.test/p.html", campaign="camp"
        )
    ]
    assert [(r.url, r.cb_kwargs) for r in requests] == [("https://site.test/p.html", {"depth": 1})]


def test_data_uris_are_hashed_not_queued_as_urls() -> None:
    from arachne.queue.enqueue import InlineImage

    spider = make_spider()
    png = make_png()
    body = (
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        '<img src="data:image/png;base64,!!"><img src="data:text/plain,hi"><img src="real.png">'
    )
    out = list(spider.parse(html_response(SEED, body, depth=0), depth=0))
    assert [o.url for o in out if isinstance(o, ImageRef)] == ["https://site.test/real.png"]
    (inline,) = [o for o in out if isinstance(o, InlineImage)]
    assert inline.url == f"data:image/png;sha256,{hashlib.sha256(png).hexdigest()}"
    assert inline.page == SEED and inline.hashes["pdq"], "hashed here; only hashes travel"
    stats = spider.crawler.stats
    assert stats.get_value("arachne/data_uri/images") == 1
    assert stats.get_value("arachne/data_uri/bad_data_uri") == 1
    assert stats.get_value("arachne/data_uri/not_an_image") == 1


def test_live_stats_count_pages_not_stylesheets_sitemaps_or_robots(redis_url: str) -> None:
    from scrapy.http import HtmlResponse, Request

    from arachne.crawler.extensions import LiveStats
    from arachne.crawler.spiders.campaign import AUX_META
    from arachne.queue import stats as st

    live = LiveStats(redis_url, "counted")
    page = Request("https://site.test/a.html")
    live.response_received(HtmlResponse(page.url, body=b"<html></html>"), page)
    for url, kind in (
        ("https://site.test/s.css", "stylesheet"),
        ("https://site.test/sitemap.xml", "sitemap"),
    ):
        aux = Request(url, meta={AUX_META: kind})
        live.response_received(HtmlResponse(url, body=b""), aux)
    robots = Request("https://site.test/robots.txt")
    live.response_received(HtmlResponse(robots.url, body=b""), robots)
    live.flush()  # counts go to Redis in one round trip, every half second and at the end
    assert live.stats.get_all().get(st.PAGES_CRAWLED) == 1


def test_stop_rule_stops_following_a_host_without_matches_until_one_comes(
    redis_url: str,
) -> None:
    from redis import Redis

    from arachne.queue.feedback import RunFeedback

    scope = Scope.for_seeds([SEED], max_depth=5, stop_after=3)
    spider = CampaignSpider.from_crawler(
        get_crawler(CampaignSpider), campaign="camp", seeds=[SEED], scope=scope
    )
    spider.feedback = RunFeedback(Redis.from_url(redis_url), "camp", 1)
    body = links_page("/next.html", images=("pic.jpg",))
    followed = []
    for i in range(5):
        spider.feedback._synced = 0  # read the shared counts on every page (test only)
        items, requests = run_parse(spider, html_response(f"{SEED}p{i}.html", body, depth=1))
        assert [x.url for x in items] == ["https://site.test/pic.jpg"], "images still found"
        followed.append(bool(requests))
    assert followed == [True, True, False, False, False]
    assert spider.crawler.stats.get_value("arachne/stop_rule/pages_not_followed") == 3
    # A worker matched an image of the host: its count starts again.
    RunFeedback(Redis.from_url(redis_url), "camp", 1).matched(["site.test"])
    spider.feedback._synced = 0
    _, requests = run_parse(spider, html_response(f"{SEED}p9.html", body, depth=1))
    assert requests, "followed again after a match"
