"""Image and link extraction from HTML, URL normalisation, scope rules and crawl-trap filters."""

from __future__ import annotations

import base64
import gzip
import json
from urllib.parse import quote

import pytest
from parsel import Selector

from arachne.crawler.extract import (
    css_imports,
    css_urls,
    decode_data_uri,
    extract_data_uris,
    extract_images,
    extract_links,
    extract_stylesheets,
    is_image_path,
    parse_sitemap,
    robots_sitemaps,
    srcset_urls,
)
from arachne.crawler.extract.datauri import DataURIError
from arachne.crawler.extract.urls import absolute
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


def test_srcset_sizes_is_ignored() -> None:
    found = images(
        '<img srcset="a-480.jpg 480w, a-800.jpg 800w" '
        'sizes="(max-width: 600px) 480px, calc(100vw - 2em), url(x.jpg)">'
    )
    assert found == {
        "https://site.test/dir/a-480.jpg": "srcset",
        "https://site.test/dir/a-800.jpg": "srcset",
    }


def test_css_image_set_with_and_without_url_wrappers() -> None:
    css = """
        .a { background-image: image-set(url("a-1x.png") 1x, url(a-2x.png) 2x); }
        .b { background-image: -webkit-image-set("b-1x.png" 1x, 'b-2x.png' 2x); }
        .c { background-image: image-set("c.avif" type("image/avif"), "c.jpg" type('image/jpeg')); }
        .d { content: "not a url"; }
    """
    assert css_urls(css) == [
        "a-1x.png",
        "a-2x.png",
        "b-1x.png",
        "b-2x.png",
        "c.avif",
        "c.jpg",
    ]


def test_css_imports_fonts_and_comments_are_not_images() -> None:
    css = """
        @import url("base.css") screen;
        @import 'theme.css';
        @font-face { font-family: x; src: url(x.woff2) format("woff2"), url(x.ttf); }
        /* .old { background: url(old.png); } */
        .bg { background: url(bg.png); }
    """
    assert css_urls(css) == ["bg.png"]
    assert css_imports(css) == ["base.css", "theme.css"]


def test_style_block_image_set_and_imports_become_stylesheets() -> None:
    html = """
        <head><link rel="stylesheet" href="/main.css"><link rel="STYLESHEET alternate"
        href="alt.css"><link rel="preload" href="x.css" as="style"><link rel="icon" href="i.png">
        <style>@import "/imported.css"; .a { background: -webkit-image-set(url(w.png) 1x) }</style>
        </head>
    """
    assert extract_stylesheets(html, PAGE) == [
        "https://site.test/main.css",
        "https://site.test/dir/alt.css",
        "https://site.test/imported.css",
    ]
    assert images(html) == {
        "https://site.test/dir/i.png": "icon",
        "https://site.test/dir/w.png": "css",
    }


def test_link_icons_and_preload_images() -> None:
    found = images(
        """
        <head>
          <link rel="shortcut icon" href="/favicon.png">
          <link rel="apple-touch-icon" sizes="180x180" href="touch.png">
          <link rel="apple-touch-icon-precomposed" href="touch-pre.png">
          <link rel="preload" as="image" href="hero.jpg"
                imagesrcset="hero-1x.jpg 1x, hero-2x.jpg 2x" imagesizes="50vw">
          <link rel="preload" as="font" href="font.woff2">
          <link rel="canonical" href="/canonical.jpg">
        </head>
        """
    )
    assert found == {
        "https://site.test/favicon.png": "icon",
        "https://site.test/dir/touch.png": "icon",
        "https://site.test/dir/touch-pre.png": "icon",
        "https://site.test/dir/hero.jpg": "preload",
        "https://site.test/dir/hero-1x.jpg": "preload",
        "https://site.test/dir/hero-2x.jpg": "preload",
    }


def test_more_lazy_attributes_bg_and_bgset() -> None:
    found = images(
        """
        <img data-original-set="os1.jpg 1x, os2.jpg 2x">
        <div data-bg="url('bg-url.jpg')"></div>
        <div data-bg="bg-bare.jpg"></div>
        <div data-bgset="set1.jpg [(max-width: 640px)] | set2.jpg 1x, set3.jpg 2x"></div>
        """
    )
    assert found == {
        "https://site.test/dir/os1.jpg": "lazy",
        "https://site.test/dir/os2.jpg": "lazy",
        "https://site.test/dir/bg-url.jpg": "lazy",
        "https://site.test/dir/bg-bare.jpg": "lazy",
        "https://site.test/dir/set1.jpg": "lazy",
        "https://site.test/dir/set2.jpg": "lazy",
        "https://site.test/dir/set3.jpg": "lazy",
    }


def test_svg_image_object_and_embed() -> None:
    found = images(
        """
        <svg><image href="svg-href.png"/><image xlink:href="/svg-xlink.png"/></svg>
        <object data="obj-typed" type="image/png"></object>
        <object data="obj.jpg"></object>
        <object data="doc.pdf" type="application/pdf"></object>
        <object data="movie.swf"></object>
        <embed src="emb.gif">
        """
    )
    assert found == {
        "https://site.test/dir/svg-href.png": "svg",
        "https://site.test/svg-xlink.png": "svg",
        "https://site.test/dir/obj-typed": "object",
        "https://site.test/dir/obj.jpg": "object",
        "https://site.test/dir/emb.gif": "object",
    }


def test_noscript_parsed_or_as_text() -> None:
    assert images('<body><noscript><img src="ns.jpg"></noscript></body>') == {
        "https://site.test/dir/ns.jpg": "img"
    }
    # As text (how some parsers keep it in <head>): its markup is parsed again.
    html = Selector(text="<html><head><noscript>x</noscript></head></html>")
    html.root.find(".//noscript").text = '<img src="ns-text.jpg">'
    assert extract_images(html, PAGE) == [("https://site.test/dir/ns-text.jpg", "img")]


def _ld(*blocks: object) -> str:
    return "".join(f'<script type="application/ld+json">{json.dumps(b)}</script>' for b in blocks)


def test_json_ld_images() -> None:
    found = images(
        _ld(
            {"@type": "Article", "url": "/article.html", "image": "string.jpg"},
            {"@type": "Product", "image": ["list1.jpg", {"@type": "ImageObject", "url": "l2.jpg"}]},
            {"image": {"@type": "ImageObject", "contentUrl": "content.jpg", "url": "u.jpg"}},
            {"author": {"@type": "Person", "url": "/me", "image": {"url": "nested.png"}}},
            {"@graph": [{"@type": "ImageObject", "contentUrl": "graph.png"}, {"url": "/p"}]},
            {"@type": "Organization", "logo": "logo.png", "thumbnailUrl": "thumb.jpg"},
        )
        + '<script type="application/ld+json">{not json</script>'
        + '<script type="application/json">{"image": "not-ld.jpg"}</script>'
    )
    assert found == {
        "https://site.test/dir/string.jpg": "jsonld",
        "https://site.test/dir/list1.jpg": "jsonld",
        "https://site.test/dir/l2.jpg": "jsonld",
        "https://site.test/dir/content.jpg": "jsonld",
        "https://site.test/dir/u.jpg": "jsonld",
        "https://site.test/dir/nested.png": "jsonld",
        "https://site.test/dir/graph.png": "jsonld",
        "https://site.test/dir/logo.png": "jsonld",
        "https://site.test/dir/thumb.jpg": "jsonld",
    }


def test_data_uris_extracted_separately() -> None:
    html = """
        <img src="data:image/png;base64,iVBORw0KGgo=">
        <img srcset="data:image/gif;base64,R0lGODlh 1x, real.jpg 2x">
        <div style="background: url('data:image/png,%89PNG')"></div>
        <img src="data:image/png;base64,iVBORw0KGgo=">
        <a href="data:text/html,hi">not an image embedding</a>
    """
    assert extract_data_uris(html) == [
        ("data:image/png;base64,iVBORw0KGgo=", "img"),
        ("data:image/gif;base64,R0lGODlh", "srcset"),
        ("data:image/png,%89PNG", "css_inline"),
    ]
    assert images(html) == {"https://site.test/dir/real.jpg": "srcset"}


def test_decode_data_uri() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    b64 = "data:image/png;base64," + base64.b64encode(png).decode()
    assert decode_data_uri(b64, 1024) == ("image/png", png)
    assert decode_data_uri("DATA:Image/PNG;charset=x;BASE64," + b64.split(",")[1], 1024)[1] == png
    assert decode_data_uri("data:image/png," + quote(png), 1024) == ("image/png", png)
    for uri, reason in [
        (b64, "too_large"),
        ("data:text/plain;base64,aGk=", "not_an_image"),
        ("data:,hi", "not_an_image"),
        ("data:image/png;base64,!!!=", "bad_data_uri"),
        ("data:image/png;base64", "bad_data_uri"),
        ("data:image/png,", "empty"),
    ]:
        with pytest.raises(DataURIError) as err:
            decode_data_uri(uri, 100)
        assert err.value.reason == reason, uri


def test_is_image_path() -> None:
    assert is_image_path("https://x.test/a/B.JPEG?x=1")
    assert not is_image_path("https://x.test/a.jpg/page")
    assert not is_image_path("http://[bad")


# --- sitemaps -------------------------------------------------------------------------------

_NS = (
    'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
    'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
)


def test_robots_sitemap_lines() -> None:
    robots = "User-agent: *\nDisallow: /x\nSitemap: https://s.test/a.xml\nsitemap:/b.xml # c\n"
    assert robots_sitemaps(robots) == ["https://s.test/a.xml", "/b.xml"]
    assert robots_sitemaps("User-agent: *\nSitemap:\n") == []


def test_image_sitemap() -> None:
    xml = f"""<?xml version="1.0"?><urlset {_NS}>
      <url><loc> https://s.test/p1.html </loc>
        <image:image><image:loc>https://s.test/i1.jpg</image:loc></image:image>
        <image:image><image:loc>https://cdn.test/i2.png</image:loc><image:title>t</image:title>
        </image:image></url>
      <url><loc>https://s.test/p2.html</loc><lastmod>2026-01-01</lastmod></url>
    </urlset>"""
    sm = parse_sitemap(xml.encode())
    assert sm.pages == ["https://s.test/p1.html", "https://s.test/p2.html"]
    assert sm.images == [
        ("https://s.test/i1.jpg", "https://s.test/p1.html"),
        ("https://cdn.test/i2.png", "https://s.test/p1.html"),
    ]
    assert sm.sitemaps == []
    assert parse_sitemap(gzip.compress(xml.encode())) == sm


def test_sitemap_index_and_bad_input() -> None:
    xml = f"""<sitemapindex {_NS}><sitemap><loc>https://s.test/a.xml</loc></sitemap>
      <sitemap><loc>https://s.test/b.xml.gz</loc></sitemap></sitemapindex>"""
    sm = parse_sitemap(xml.encode())
    assert sm.sitemaps == ["https://s.test/a.xml", "https://s.test/b.xml.gz"]
    assert sm.pages == [] and sm.images == []
    for bad in (b"", b"not xml", b"\x1f\x8bnot gzip", b"<html><body>404</body></html>"):
        assert parse_sitemap(bad).pages == []
    # Entities are not expanded: a sitemap cannot make the crawler read local files.
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
        b"<urlset><url><loc>https://s.test/&e;</loc></url></urlset>"
    )
    assert all("/etc" not in p and len(p) < 40 for p in parse_sitemap(xxe).pages)


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
    scope = Scope.for_seeds(
        ["https://b.test/", "https://a.test/"], max_depth=2, max_pages=7, max_pages_per_host=4
    )
    data = scope.as_json()
    assert data == {
        "allowed_hosts": ["a.test", "b.test"],
        "max_depth": 2,
        "max_pages": 7,
        "max_pages_per_host": 4,
        "stop_after": 0,
        "include_subdomains": True,
        "priority": "normal",
        "robots": "obey",
    }
    assert Scope.from_json(data) == scope
    strict = Scope(frozenset({"x.test"}), max_depth=1, max_pages=3, include_subdomains=False)
    back = Scope.from_json(strict.as_json())
    assert back == strict
    assert not back.allows("https://www.x.test/")


def test_scope_from_json_defaults() -> None:
    scope = Scope.from_json({"allowed_hosts": ["a.test"]})
    assert (scope.max_depth, scope.max_pages, scope.include_subdomains) == (5, 10_000, True)
    assert scope.max_pages_per_host == 0, "campaigns made before per-host budgets: none"
    assert scope.stop_after == 0, "nor a stop rule"
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


def test_the_fast_url_path_agrees_with_w3lib() -> None:
    """``absolute`` skips ``safe_url_string`` for URLs it would return unchanged: on random
    URLs full of characters it re-quotes, it must give what w3lib alone gives."""
    import random
    import string
    from urllib.parse import urljoin, urlsplit

    from w3lib.url import safe_url_string

    def reference(base: str, raw: str) -> str | None:  # absolute() before the fast path
        raw = raw.strip()
        if not raw or raw.startswith("#") or raw[:5].lower() == "data:":
            return None
        try:
            url = safe_url_string(urljoin(base, raw)).split("#", 1)[0]
            scheme = urlsplit(url).scheme
        except ValueError:
            return None
        return url if scheme in ("http", "https") else None

    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%^`{}|\\\" <>é"
    starts = ["http://ex.com/", "HTTP://EX.com/", "https://a_b.Ex.com:8080", "http://ex.com:"]
    starts += ["http://u:p@ex.com", "https://ex.com?", "http://ex.com:0080/", "http://[::1]:80/"]
    starts += ["", "/", "../", "?", "//cdn.example", "http://ex.com:99999/"]
    raws = [
        rng.choice(starts) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        for _ in range(50_000)
    ]
    base = "http://site.example/dir/page.html"
    assert [r for r in raws if absolute(base, r) != reference(base, r)] == []
    assert absolute(base, "/p/1.html?a=1&b=2") == "http://site.example/p/1.html?a=1&b=2"


def test_a_query_only_link_is_resolved_before_its_path_is_judged() -> None:
    html = '<a href="?size=2">bigger</a><a href="/page.html">page</a><a href="x.PNG#f">x</a>'
    found = dict(extract_images(html, "http://ex.com/pics/cat.jpg"))
    assert found == {
        "http://ex.com/pics/cat.jpg?size=2": "link",
        "http://ex.com/pics/x.PNG": "link",
    }
