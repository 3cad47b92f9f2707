"""What a crawled resource points to: image URLs and pages to follow.

One module per kind of resource: ``html`` (pages), ``css`` (inline, ``<style>`` and linked
stylesheets), ``jsonld`` (structured data in pages), ``sitemap`` (robots.txt and sitemaps),
``datauri`` (images inlined in a page), ``urls`` (helpers they share).
"""

from __future__ import annotations

from arachne.crawler.extract.css import css_imports, css_urls
from arachne.crawler.extract.datauri import decode_data_uri
from arachne.crawler.extract.html import (
    extract_data_uris,
    extract_images,
    extract_links,
    extract_stylesheets,
)
from arachne.crawler.extract.sitemap import Sitemap, parse_sitemap, robots_sitemaps
from arachne.crawler.extract.urls import IMAGE_EXTENSIONS, is_image_path, srcset_urls

__all__ = [
    "IMAGE_EXTENSIONS",
    "Sitemap",
    "css_imports",
    "css_urls",
    "decode_data_uri",
    "extract_data_uris",
    "extract_images",
    "extract_links",
    "extract_stylesheets",
    "is_image_path",
    "parse_sitemap",
    "robots_sitemaps",
    "srcset_urls",
]
