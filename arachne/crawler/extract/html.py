"""Image URLs, stylesheets and links to follow from an HTML page, in every common embedding."""

from __future__ import annotations

from collections.abc import Callable

from parsel import Selector
from w3lib.html import get_base_url

from arachne.crawler.extract.css import css_imports, css_urls
from arachne.crawler.extract.jsonld import jsonld_images
from arachne.crawler.extract.urls import (
    IMAGE_EXTENSIONS,
    absolute,
    is_data_uri,
    is_image_path,
    srcset_urls,
)

_LAZY_ATTRS = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
_LAZY_SRCSETS = ("data-srcset", "data-lazy-srcset", "data-original-set")
_META_IMAGE = (
    "//meta[@property='og:image' or @property='og:image:url' or @property='og:image:secure_url'"
    " or @name='twitter:image' or @name='twitter:image:src'"
    " or @property='twitter:image' or @itemprop='image']/@content"
)
_ICON_RELS = frozenset(
    {"icon", "apple-touch-icon", "apple-touch-icon-precomposed", "image_src", "mask-icon"}
)
_MAX_NOSCRIPT_DEPTH = 2
IMAGE_SUFFIXES = tuple(IMAGE_EXTENSIONS)

Add = Callable[[str | None, str], None]


def _selector(html: str | Selector) -> Selector:
    return html if isinstance(html, Selector) else Selector(text=html)


def _rels(node: Selector) -> set[str]:
    return set((node.attrib.get("rel") or "").lower().split())


def _srcsets(add: Add, values: list[str], how: str) -> None:
    for value in values:
        for u in srcset_urls(value):
            add(u, how)


def _collect(sel: Selector, add: Add, noscript_depth: int = 0) -> None:
    """Every raw image reference in ``sel``, passed to ``add(raw, how)`` in page order."""
    for src in sel.xpath("//img/@src | //input[@type='image' or @type='IMAGE']/@src").getall():
        add(src, "img")
    # srcset candidates only; `sizes` holds media conditions and lengths, never URLs.
    _srcsets(add, sel.xpath("//img/@srcset").getall(), "srcset")
    _srcsets(add, sel.xpath("//picture/source/@srcset | //source/@srcset").getall(), "picture")
    for attr in _LAZY_ATTRS:
        for src in sel.xpath(f"//*/@{attr}").getall():
            add(src, "lazy")
    for attr in _LAZY_SRCSETS:
        _srcsets(add, sel.xpath(f"//*/@{attr}").getall(), "lazy")
    for bg in sel.xpath("//*/@data-bg").getall():
        for u in css_urls(bg) if "url(" in bg.lower() else [bg]:
            add(u, "lazy")
    for bgset in sel.xpath("//*/@data-bgset").getall():
        # lazysizes' bgset: "a.jpg [--small] | b.jpg 2x, c.jpg 3x"
        for part in bgset.split("|"):
            _srcsets(add, [part.split("[", 1)[0]], "lazy")
    for style in sel.xpath("//*/@style").getall():
        for u in css_urls(style):
            add(u, "css_inline")
    for css in sel.xpath("//style/text()").getall():
        for u in css_urls(css):
            add(u, "css")
    for content in sel.xpath(_META_IMAGE).getall():
        add(content, "meta")
    for link in sel.xpath("//link"):
        rels = _rels(link)
        if rels & _ICON_RELS:
            add(link.attrib.get("href"), "icon")
        elif "preload" in rels and (link.attrib.get("as") or "").lower() == "image":
            add(link.attrib.get("href"), "preload")
            _srcsets(add, [link.attrib.get("imagesrcset") or ""], "preload")
    for poster in sel.xpath("//video/@poster").getall():
        add(poster, "poster")
    for href in sel.xpath("//image/@href | //image/@*[name()='xlink:href']").getall():
        add(href, "svg")
    for obj in sel.xpath("//object[@data] | //embed[@src]"):
        raw = obj.attrib.get("data") or obj.attrib.get("src") or ""
        kind = (obj.attrib.get("type") or "").lower()
        if kind.startswith("image/") or is_image_path(raw) or is_data_uri(raw):
            add(raw, "object")
    for text in sel.xpath("//script[@type='application/ld+json']/text()").getall():
        for u in jsonld_images(text):
            add(u, "jsonld")
    # Some parsers keep <noscript> as text: its markup is parsed again, boundedly.
    if noscript_depth < _MAX_NOSCRIPT_DEPTH:
        for text in sel.xpath("//noscript/text()").getall():
            if "<" in text:
                _collect(Selector(text=text), add, noscript_depth + 1)


def _links_to_images(sel: Selector, base: str) -> list[str]:
    # Most links lead to pages: a cheap look at the raw path first, resolving only those
    # that end like an image (resolving never changes how a path ends).
    hrefs = [h for h in sel.xpath("//a/@href").getall() if _ends_like_image(h)]
    return [url for url in (absolute(base, h) for h in hrefs) if url and is_image_path(url)]


def _ends_like_image(raw: str) -> bool:
    raw = raw.strip()
    if raw.startswith("?"):
        return True  # the page's own path with another query: resolved to know
    return raw.split("#", 1)[0].split("?", 1)[0].lower().endswith(IMAGE_SUFFIXES)


def extract_images(html: str | Selector, page_url: str) -> list[tuple[str, str]]:
    """(absolute image URL, how it was embedded), first occurrence of each URL kept."""
    sel = _selector(html)
    base = get_base_url(sel.get() or "", page_url)
    first: dict[str, str] = {}

    def add(raw: str | None, how: str) -> None:
        url = absolute(base, raw) if raw else None
        if url:
            first.setdefault(url, how)

    _collect(sel, add)
    for url in _links_to_images(sel, base):
        first.setdefault(url, "link")
    return list(first.items())


def extract_data_uris(html: str | Selector) -> list[tuple[str, str]]:
    """(data: URI, how it was embedded) of images inlined in the page, each once."""
    sel = _selector(html)
    first: dict[str, str] = {}

    def add(raw: str | None, how: str) -> None:
        if raw and is_data_uri(raw):
            first.setdefault(raw.strip(), how)

    _collect(sel, add)
    return list(first.items())


def extract_stylesheets(html: str | Selector, page_url: str) -> list[str]:
    """Linked stylesheets and those ``@import``ed by ``<style>`` blocks, absolute, each once."""
    sel = _selector(html)
    base = get_base_url(sel.get() or "", page_url)
    raw = [
        link.attrib.get("href") or ""
        for link in sel.xpath("//link[@href]")
        if "stylesheet" in _rels(link)
    ]
    for css in sel.xpath("//style/text()").getall():
        raw += css_imports(css)
    return list(dict.fromkeys(u for u in (absolute(base, r) for r in raw) if u))


def extract_links(html: str | Selector, page_url: str) -> list[str]:
    """Pages to follow: anchors, areas and frames that are not image files."""
    sel = _selector(html)
    base = get_base_url(sel.get() or "", page_url)
    links: dict[str, None] = {}
    for href in sel.xpath("//a/@href | //area/@href | //iframe/@src | //frame/@src").getall():
        url = absolute(base, href)
        if url and not is_image_path(url):
            links[url] = None
    return list(links)
