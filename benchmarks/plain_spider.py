"""The crawl benchmark's baseline: a plain Scrapy link-following spider, as a user would
write it (Scrapy's defaults: 16 requests at once, 8 per host, in-memory scheduler).

    python -m benchmarks.plain_spider START_URL
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess


class Follow(scrapy.Spider):
    name = "follow"

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, self.parse)


if __name__ == "__main__":
    process = CrawlerProcess({"LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False})
    process.crawl(Follow, start_urls=[sys.argv[1]])
    process.start()
