"""Image URLs (and links to follow) from an HTML page, in every common embedding."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from parsel import Selector
from w3lib.html import get_base_url
from w3lib.url import safe_url_string

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".avif", ".tif", ".tiff"}
)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_LAZY_ATTRS = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
_LAZY_SRCSETS = ("data-srcset", "data-lazy-srcset")


def srcset_urls(srcset: str) -> list[str]:
    """Candidate URLs of a srcset ("a.jpg 1x, b.jpg 2x"); descriptors dropped."""
    # HTML's srcset parsing rules: a URL is a run of non-whitespace (it may contain commas),
    # trailing commas end it; otherwise its descriptors run to the next comma outside
    # parentheses ("a.jpg 1x,b.jpg 2x" is two candidates).
    urls = []
    pos, end = 0, len(srcset)
    while pos < end:
        while pos < end and (srcset[pos].isspace() or srcset[pos] == ","):
            pos += 1
        start = pos
        while pos < end and not srcset[pos].isspace():
            pos += 1
        url = srcset[start:pos]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while pos < end and not (srcset[pos] == "," and depth == 0):
                depth += {"(": 1, ")": -1 if depth else 0}.get(srcset[pos], 0)
                pos += 1
        if url:
            urls.append(url)
    return urls


def css_urls(css: str) -> list[str]:
    return [m.group(2).strip() for m in _CSS_URL.finditer(css) if m.group(2).strip()]


def is_image_path(url: str) -> bool:
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        return False
    return any(path.endswith(ext) for ext in IMAGE_EXTENSIONS)


def _absolute(base: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw or raw.startswith(("data:", "javascript:", "mailto:", "blob:", "#")):
        return None
    try:
        url = safe_url_string(urljoin(base, raw)).split("#", 1)[0]
        scheme = urlsplit(url).scheme
    except ValueError:  # "http://[bad", port out of range: skip this URL, not the page
        return None
    return url if scheme in ("http", "https") else None


def extract_images(html: str | Selector, page_url: str) -> list[tuple[str, str]]:
    """(absolute image URL, how it was embedded), first occurrence of each URL kept."""
    sel = html if isinstance(html, Selector) else Selector(text=html)
    base = get_base_url(sel.get() or "", page_url)
    found: list[tuple[str, str]] = []

    def add(raw: str | None, how: str) -> None:
        if raw:
            url = _absolute(base, raw)
            if url:
                found.append((url, how))

    for src in sel.xpath("//img/@src | //input[@type='image']/@src").getall():
        add(src, "img")
    for srcset in sel.xpath("//img/@srcset").getall():
        for u in srcset_urls(srcset):
            add(u, "srcset")
    for srcset in sel.xpath("//picture/source/@srcset | //source/@srcset").getall():
        for u in srcset_urls(srcset):
            add(u, "picture")
    for attr in _LAZY_ATTRS:
        for src in sel.xpath(f"//*/@{attr}").getall():
            add(src, "lazy")
    for attr in _LAZY_SRCSETS:
        for srcset in sel.xpath(f"//*/@{attr}").getall():
            for u in srcset_urls(srcset):
                add(u, "lazy")
    for style in sel.xpath("//*/@style").getall():
        for u in css_urls(style):
            add(u, "css_inline")
    for css in sel.xpath("//style/text()").getall():
        for u in css_urls(css):
            add(u, "css")
    for content in sel.xpath(
        "//meta[@property='og:image' or @property='og:image:url' or @property='og:image:secure_url'"
        " or @name='twitter:image' or @name='twitter:image:src']/@content"
    ).getall():
        add(content, "meta")
    for poster in sel.xpath("//video/@poster").getall():
        add(poster, "poster")
    for href in sel.xpath("//a/@href").getall():
        url = _absolute(base, href)
        if url and is_image_path(url):
            found.append((url, "link"))
    first: dict[str, str] = {}
    for url, how in found:
        first.setdefault(url, how)
    return list(first.items())


def extract_links(html: str | Selector, page_url: str) -> list[str]:
    """Pages to follow: anchors, areas and frames that are not image files."""
    sel = html if isinstance(html, Selector) else Selector(text=html)
    base = get_base_url(sel.get() or "", page_url)
    links: dict[str, None] = {}
    for href in sel.xpath("//a/@href | //area/@href | //iframe/@src | //frame/@src").getall():
        url = _absolute(base, href)
        if url and not is_image_path(url):
            links[url] = None
    return list(links)
