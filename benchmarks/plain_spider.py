"""The crawl benchmark's baselines, as a user would assemble them from Scrapy (its defaults:
16 requests at once, 8 per host, in-memory scheduler):

    python -m benchmarks.plain_spider START_URL            # follow links
    python -m benchmarks.plain_spider START_URL --images   # + ImagesPipeline and phash

With ``--images`` every page's ``img`` URLs go to Scrapy's ``ImagesPipeline`` (download,
open, convert as it does), and each image is hashed with ``imagehash.phash``. Its store
keeps nothing: benign pictures, but no image is written anywhere.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.pipelines.images import ImagesPipeline


class NoStore:
    """A FilesStore that keeps nothing (and has nothing, so every image is downloaded)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def persist_file(self, *args: Any, **kwargs: Any) -> None:
        return None

    def stat_file(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


class PhashImagesPipeline(ImagesPipeline):
    STORE_SCHEMES = {**ImagesPipeline.STORE_SCHEMES, "none": NoStore}

    def get_images(self, response: Any, request: Any, info: Any, *, item: Any = None) -> Any:
        import imagehash
        from PIL import Image

        with Image.open(io.BytesIO(response.body)) as img:
            imagehash.phash(img)
        yield from super().get_images(response, request, info, item=item)


class Follow(scrapy.Spider):
    name = "follow"
    images = False

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        if self.images:
            srcs = response.css("img::attr(src)").getall()
            yield {"image_urls": [response.urljoin(s) for s in srcs]}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, self.parse)


if __name__ == "__main__":
    settings: dict[str, Any] = {"LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False}
    if "--images" in sys.argv:
        Follow.images = True
        settings["ITEM_PIPELINES"] = {"benchmarks.plain_spider.PhashImagesPipeline": 1}
        settings["IMAGES_STORE"] = "none://"
    process = CrawlerProcess(settings)
    process.crawl(Follow, start_urls=[sys.argv[1]])
    process.start()
