"""robots.txt ``Sitemap:`` lines and sitemaps: page URLs, image URLs, child sitemaps."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field

from lxml import etree

MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit, uncompressed


@dataclass
class Sitemap:
    pages: list[str] = field(default_factory=list)
    images: list[tuple[str, str | None]] = field(default_factory=list)  # (image, its page)
    sitemaps: list[str] = field(default_factory=list)  # children of a sitemap index


def robots_sitemaps(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "sitemap" and value.strip():
            out.append(value.split("#", 1)[0].strip())
    return out


def _gunzip(body: bytes) -> bytes:
    with gzip.GzipFile(fileobj=io.BytesIO(body)) as f:
        data = f.read(MAX_SITEMAP_BYTES + 1)
    if len(data) > MAX_SITEMAP_BYTES:
        raise ValueError("sitemap too large")
    return data


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_sitemap(body: bytes) -> Sitemap:
    """A urlset or sitemapindex (gzipped or not); anything unparsable gives an empty one."""
    result = Sitemap()
    try:
        if body[:2] == b"\x1f\x8b":
            body = _gunzip(body)
        # No entities, no network: a sitemap is untrusted input.
        parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
        root = etree.fromstring(body, parser=parser)
    except (ValueError, OSError, etree.XMLSyntaxError):
        return result
    if root is None:
        return result
    kind = _local(root.tag)
    for entry in root:
        name = _local(entry.tag)
        loc = next((c.text.strip() for c in entry if _local(c.tag) == "loc" and c.text), None)
        if kind == "sitemapindex" and name == "sitemap" and loc:
            result.sitemaps.append(loc)
        elif kind == "urlset" and name == "url":
            if loc:
                result.pages.append(loc)
            for image in entry:
                if _local(image.tag) != "image":
                    continue
                for child in image:
                    if _local(child.tag) == "loc" and child.text and child.text.strip():
                        result.images.append((child.text.strip(), loc))
    return result
