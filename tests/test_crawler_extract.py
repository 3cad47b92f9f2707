"""Image and link extraction from HTML, URL normalisation, scope rules and crawl-trap filters."""

from __future__ import annotations

import pytest
from parsel import Selector

from arachne.crawler.extract import css_urls, extract_images, extract_links, srcset_urls
from arachne.crawler.scope import (
    MAX_PATH_SEGMENTS,
    MAX_QUERY_PARAMS,
    MAX_SEGMENT_REPEATS,
    MAX_URL_LENGTH,
    Scope,
    normalize_url,
    trap_reason,
)

PAGE = "https://site.test/dir/page.html"


def images(html: str, page: str = PAGE) -> dict[str, str]:
    found = extract_images(html, page)
    urls = [u for u, _ in found]
    assert len(urls) == len(set(urls)), f"duplicate URLs in {found}"
    return dict(found)


# --- srcset / css helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        ("a.jpg", ["a.jpg"]),
        ("a.jpg 1x, b.jpg 2x, c.jpg 3x", ["a.jpg", "b.jpg", "c.jpg"]),
        (
            "small.jpg 320w,\n  medium.jpg 640w,\tlarge.jpg 1280w",
            ["small.jpg", "medium.jpg", "large.jpg"],
        ),
        # Commas inside a URL belong to it (image CDNs put transforms there).
        (
            "/img/w_320,h_200,c_fill/a.jpg 320w, /img/w_640,h_400,c_fill/a.jpg 640w",
            ["/img/w_320,h_200,c_fill/a.jpg", "/img/w_640,h_400,c_fill/a.jpg"],
        ),
        # Candidates without descriptors, separated by ", ".
        ("a.jpg, b.jpg", ["a.jpg", "b.jpg"]),
        # A comma right after the descriptor ends the candidate (HTML's srcset rules).
        ("a.jpg 1x,b.jpg 2x", ["a.jpg", "b.jpg"]),
        ("a.jpg 300w,b,c.jpg 600w", ["a.jpg", "b,c.jpg"]),
        ("  , a.jpg 1x ,  ", ["a.jpg"]),
        ("a.jpg,,, b.jpg 2x", ["a.jpg", "b.jpg"]),
        # A comma inside a parenthesised descriptor does not end the candidate.
        ("a.jpg (future, descriptor) 1x, b.jpg 2x", ["a.jpg", "b.jpg"]),
        ("", []),
    ],
)
def test_srcset_urls(srcset: str, expected: list[str]) -> None:
    assert srcset_urls(srcset) == expected


def test_css_urls_with_and_without_quotes() -> None:
    css = """
        .a { background-image: url(plain.jpg); }
        .b { background: url('single.png') no-repeat; }
        .c { background: url( "double quoted.gif" ); }
        .d { background: URL(upper.webp); }
        .e { background: url(); }
    """
    assert css_urls(css) == ["plain.jpg", "single.png", "double quoted.gif", "upper.webp"]


# --- every embedding -------------------------------------------------------------------------


def test_img_src_relative_absolute_and_protocol_relative() -> None:
    found = images(
        """
        <img src="rel.jpg">
        <img src="/root.png">
        <img src="../up.gif">
        <img src="https://cdn.test/abs.webp">
        <img src="//proto.test/pr.jpg">
        <input type="image" src="button.png">
        """
    )
    assert found == {
        "https://site.test/dir/rel.jpg": "img",
        "https://site.test/root.png": "img",
        "https://site.test/up.gif": "img",
        "https://cdn.test/abs.webp": "img",
        "https://proto.test/pr.jpg": "img",
        "https://site.test/dir/button.png": "img",
    }


def test_protocol_relative_follows_page_scheme() -> None:
    found = images('<img src="//proto.test/pr.jpg">', "http://site.test/")
    assert found == {"http://proto.test/pr.jpg": "img"}


def test_img_srcset_every_candidate() -> None:
    found = images(
        '<img src="a.jpg" srcset="a-1x.jpg 1x, /img/w_640,q_80/a.jpg 2x, '
        'https://cdn.test/a-3x.jpg 3x">'
    )
    assert found == {
        "https://site.test/dir/a.jpg": "img",
        "https://site.test/dir/a-1x.jpg": "srcset",
        "https://site.test/img/w_640,q_80/a.jpg": "srcset",
        "https://cdn.test/a-3x.jpg": "srcset",
    }


def test_picture_source() -> None:
    found = images(
        """
        <picture>
          <source type="image/webp" srcset="p.webp 1x, p2.webp 2x">
          <source media="(min-width: 800px)" srcset="/wide.jpg">
          <img src="fallback.jpg">
        </picture>
        """
    )
    assert found == {
        "https://site.test/dir/p.webp": "picture",
        "https://site.test/dir/p2.webp": "picture",
        "https://site.test/wide.jpg": "picture",
        "https://site.test/dir/fallback.jpg": "img",
    }


def test_inline_style_background_with_and_without_quotes() -> None:
    found = images(
        """
        <div style="background-image: url(bare.jpg)"></div>
        <div style="background: url('single.png') center"></div>
        <div style='background: url("double.gif")'></div>
        <div style="background: url(&quot;entity.webp&quot;)"></div>
        <div style="color: red"></div>
        """
    )
    assert found == {
        "https://site.test/dir/bare.jpg": "css_inline",
        "https://site.test/dir/single.png": "css_inline",
        "https://site.test/dir/double.gif": "css_inline",
        "https://site.test/dir/entity.webp": "css_inline",
    }


def test_style_block() -> None:
    found = images(
        """
        <head><style>
          body { background: url(/bg.png); }
          .hero { background-image: url("hero.jpg"), url('overlay.png'); }
        </style></head>
        """
    )
    assert found == {
        "https://site.test/bg.png": "css",
        "https://site.test/dir/hero.jpg": "css",
        "https://site.test/dir/overlay.png": "css",
    }


def test_lazy_loading_attributes() -> None:
    found = images(
        """
        <img src="placeholder.gif" data-src="lazy.jpg">
        <img data-lazy-src="lazy2.jpg">
        <img data-original="orig.png">
        <div data-srcset="ls1.jpg 1x, ls2.jpg 2x"></div>
        <img data-lazy-srcset="lls.webp 480w">
        """
    )
    assert found == {
        "https://site.test/dir/placeholder.gif": "img",
        "https://site.test/dir/lazy.jpg": "lazy",
        "https://site.test/dir/lazy2.jpg": "lazy",
        "https://site.test/dir/orig.png": "lazy",
        "https://site.test/dir/ls1.jpg": "lazy",
        "https://site.test/dir/ls2.jpg": "lazy",
        "https://site.test/dir/lls.webp": "lazy",
    }


def test_meta_og_and_twitter_images() -> None:
    found = images(
        """
        <head>
          <meta property="og:image" content="https://cdn.test/og.jpg">
          <meta property="og:image:secure_url" content="/og-secure.jpg">
          <meta name="twitter:image" content="tw.png">
          <meta name="twitter:image:src" content="tw-src.png">
          <meta name="description" content="not-an-image.jpg">
        </head>
        """
    )
    assert found == {
        "https://cdn.test/og.jpg": "meta",
        "https://site.test/og-secure.jpg": "meta",
        "https://site.test/dir/tw.png": "meta",
        "https://site.test/dir/tw-src.png": "meta",
    }


def test_anchor_to_image_files_only() -> None:
    found = images(
        """
        <a href="full.JPG">upper-case extension</a>
        <a href="/gallery/photo.jpeg?size=large">with query</a>
        <a href="pic.webp#top">with fragment</a>
        <a href="page.html">a page</a>
        <a href="/download?file=x.jpg">query only</a>
        """
    )
    assert found == {
        "https://site.test/dir/full.JPG": "link",
        "https://site.test/gallery/photo.jpeg?size=large": "link",
        "https://site.test/dir/pic.webp": "link",
    }


def test_video_poster() -> None:
    found = images('<video poster="/posters/v.jpg"><source src="v.mp4"></video>')
    assert found == {"https://site.test/posters/v.jpg": "poster"}


def test_base_href_changes_resolution() -> None:
    html = """
        <head><base href="https://static.test/assets/"></head>
        <img src="a.jpg"><div style="background: url(b.png)"></div><a href="c.gif">c</a>
        <a href="next.html">next</a>
    """
    assert images(html) == {
        "https://static.test/assets/a.jpg": "img",
        "https://static.test/assets/b.png": "css_inline",
        "https://static.test/assets/c.gif": "link",
    }
    assert extract_links(html, PAGE) == ["https://static.test/assets/next.html"]


def test_relative_base_href() -> None:
    found = images('<head><base href="/media/"></head><img src="x.jpg">')
    assert found == {"https://site.test/media/x.jpg": "img"}


def test_data_javascript_and_empty_urls_ignored() -> None:
    found = images(
        """
        <img src="data:image/png;base64,iVBORw0KGgo=">
        <img src="DATA:image/gif;base64,R0lGODlh">
        <img src="javascript:alert(1)">
        <img src="  JavaScript:void(0)">
        <img src="">
        <img src="#">
        <img srcset="data:image/png;base64,AAAA 1x, real.jpg 2x">
        <div style="background: url(data:image/svg+xml;utf8,<svg></svg>)"></div>
        <a href="mailto:a@example.test">mail</a>
        <img src="ftp://files.test/x.jpg">
        """
    )
    assert found == {"https://site.test/dir/real.jpg": "srcset"}


def test_fragments_stripped_and_duplicates_kept_once_with_first_embedding() -> None:
    found = extract_images(
        """
        <img src="same.jpg#one">
        <img src="same.jpg#two">
        <img srcset="same.jpg 1x, other.jpg 2x">
        <div style="background: url(same.jpg)"></div>
        <a href="https://site.test/dir/same.jpg">link</a>
        <a href="other.jpg">link</a>
        """,
        PAGE,
    )
    assert found == [
        ("https://site.test/dir/same.jpg", "img"),
        ("https://site.test/dir/other.jpg", "srcset"),
    ]


def test_urls_are_made_safe() -> None:
    found = images('<img src="with space/é.jpg">')
    assert found == {"https://site.test/dir/with%20space/%C3%A9.jpg": "img"}


def test_accepts_a_selector() -> None:
    sel = Selector(text='<img src="a.jpg"><a href="b.html">b</a>')
    assert extract_images(sel, PAGE) == [("https://site.test/dir/a.jpg", "img")]
    assert extract_links(sel, PAGE) == ["https://site.test/dir/b.html"]


def test_page_without_images() -> None:
    assert extract_images("<p>nothing here</p>", PAGE) == []


# --- links -----------------------------------------------------------------------------------


def test_links_follow_pages_not_images() -> None:
    html = """
        <a href="next.html">next</a>
        <a href="/abs/page">abs</a>
        <a href="https://other.test/x">other</a>
        <a href="//proto.test/y">proto</a>
        <a href="photo.jpg">image</a>
        <a href="photo.PNG?x=1">image with query</a>
        <a href="next.html#section">same page, another fragment</a>
        <a href="#top">fragment only</a>
        <a href="javascript:void(0)">js</a>
        <a href="mailto:x@example.test">mail</a>
        <a href="data:text/html,hi">data</a>
        <map><area href="area.html"></map>
        <iframe src="frame.html"></iframe>
        <frameset><frame src="/f2.html"></frameset>
        <img src="not-a-link.html">
    """
    links = extract_links(html, PAGE)
    assert links == [
        "https://site.test/dir/next.html",
        "https://site.test/abs/page",
        "https://other.test/x",
        "https://proto.test/y",
        "https://site.test/dir/area.html",
        "https://site.test/dir/frame.html",
        "https://site.test/f2.html",
    ]


# --- normalisation and scope -------------------------------------------------------------------


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Site.TEST/a/b?z=1&a=2#frag") == "http://site.test/a/b?a=2&z=1"
    assert normalize_url("http://site.test/a?b=1&a=2") == normalize_url(
        "http://site.test/a?a=2&b=1#x"
    )
    assert normalize_url("http://site.test/a%7eb") == normalize_url("http://site.test/a~b")
    assert normalize_url("http://site.test/a") != normalize_url("http://site.test/b")


def test_scope_allows_seed_hosts_only_by_default() -> None:
    scope = Scope.for_seeds(["https://Site.test/start", "http://second.test:8080/x"])
    assert scope.allowed_hosts == frozenset({"site.test", "second.test"})
    assert scope.allows("https://site.test/any/page")
    assert scope.allows("http://site.test/other-scheme-http")
    assert scope.allows("http://SITE.TEST/upper")
    assert scope.allows("http://second.test/no-port")
    assert scope.allows("http://second.test:9999/other-port")
    assert not scope.allows("https://elsewhere.test/")
    assert not scope.allows("https://notsite.test/")  # suffix but not a subdomain
    assert not scope.allows("https://site.test.evil.test/")


def test_scope_extra_hosts() -> None:
    scope = Scope.for_seeds(["https://site.test/"], allow_hosts=["  Mirror.TEST ", "", "  "])
    assert scope.allowed_hosts == frozenset({"site.test", "mirror.test"})
    assert scope.allows("https://mirror.test/page")
    assert not scope.allows("https://other.test/page")


def test_scope_subdomains() -> None:
    scope = Scope.for_seeds(["https://site.test/"])
    assert scope.allows("https://www.site.test/")
    assert scope.allows("https://a.b.site.test/")
    strict = Scope(frozenset({"site.test"}), include_subdomains=False)
    assert strict.allows("https://site.test/")
    assert not strict.allows("https://www.site.test/")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://site.test/file",
        "file:///etc/passwd",
        "mailto:abuse@site.test",
        "javascript:alert(1)",
        "data:text/html,hello",
        "//site.test/no-scheme",
    ],
)
def test_scope_refuses_other_schemes(url: str) -> None:
    assert not Scope.for_seeds(["https://site.test/"]).allows(url)


def test_scope_limits_and_json_round_trip() -> None:
    scope = Scope.for_seeds(["https://b.test/", "https://a.test/"], max_depth=2, max_pages=7)
    data = scope.as_json()
    assert data == {
        "allowed_hosts": ["a.test", "b.test"],
        "max_depth": 2,
        "max_pages": 7,
        "include_subdomains": True,
        "priority": "normal",
    }
    assert Scope.from_json(data) == scope
    strict = Scope(frozenset({"x.test"}), max_depth=1, max_pages=3, include_subdomains=False)
    back = Scope.from_json(strict.as_json())
    assert back == strict
    assert not back.allows("https://www.x.test/")


def test_scope_from_json_defaults() -> None:
    scope = Scope.from_json({"allowed_hosts": ["a.test"]})
    assert (scope.max_depth, scope.max_pages, scope.include_subdomains) == (5, 10_000, True)
    assert scope.allows("https://www.a.test/")


# --- crawl traps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://site.test/",
        "https://site.test/a/b/c/page.html?x=1&y=2",
        "https://site.test/blog/2024/11/25/post",
        "https://site.test/" + "/".join(f"s{i}" for i in range(MAX_PATH_SEGMENTS)),
        "https://site.test/" + "/".join(["loop"] * MAX_SEGMENT_REPEATS) + "/end",
        "https://site.test/q?" + "&".join(f"k{i}=v" for i in range(MAX_QUERY_PARAMS)),
    ],
)
def test_normal_urls_pass(url: str) -> None:
    assert trap_reason(url) is None


def test_long_url_is_a_trap() -> None:
    base = "https://site.test/p?q="
    at_limit = base + "a" * (MAX_URL_LENGTH - len(base))
    assert len(at_limit) == MAX_URL_LENGTH
    assert trap_reason(at_limit) is None
    assert trap_reason(at_limit + "a") == "url_too_long"


def test_deep_path_is_a_trap() -> None:
    url = "https://site.test/" + "/".join(f"s{i}" for i in range(MAX_PATH_SEGMENTS + 1))
    assert trap_reason(url) == "path_too_deep"


def test_repeated_segment_is_a_trap() -> None:
    url = "https://site.test/a/" + "/".join(["cal"] * (MAX_SEGMENT_REPEATS + 1))
    assert trap_reason(url) == "repeated_path_segment"
    spread = "https://site.test/x/a/y/a/z/a/w/a"
    assert trap_reason(spread) == "repeated_path_segment"


def test_many_query_params_is_a_trap() -> None:
    url = "https://site.test/q?" + "&".join(f"k{i}=" for i in range(MAX_QUERY_PARAMS + 1))
    assert trap_reason(url) == "too_many_query_params"


def test_one_malformed_url_costs_only_itself() -> None:
    html = (
        '<img src="http://[bad/x.jpg"><img src="http://h.example:99999/a.jpg">'
        '<img src="/ok.jpg"><a href="http://[::1/">x</a><a href="/next.html">n</a>'
    )
    assert [u for u, _ in extract_images(html, "http://site.example/")] == [
        "http://site.example/ok.jpg"
    ]
    assert extract_links(html, "http://site.example/") == ["http://site.example/next.html"]
