"""Item pipeline: batches ImageRefs and hands them to the queue."""

from __future__ import annotations

from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector

from arachne.queue import stats as st
from arachne.queue.connection import image_queue, redis_from_url
from arachne.queue.enqueue import Enqueuer, ImageRef
from arachne.settings import Settings

CHUNK = 100  # refs checked against Redis in one round trip
PIPELINE_FAILURES = "arachne/queue_failures"  # Scrapy stat: chunks that could not be queued


class QueuePipeline:
    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        campaign: str,
        stats: StatsCollector | None = None,
        priority: str = "normal",
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.campaign = campaign
        self._chunk: list[ImageRef] = []
        self.enqueuer: Enqueuer | None = None
        self.failed = False
        self.crawl_stats = stats
        self.priority = priority

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> QueuePipeline:
        s = crawler.settings
        if not s.get("ARACHNE_REDIS_URL") or not s.get("ARACHNE_CAMPAIGN"):
            raise NotConfigured("ARACHNE_REDIS_URL and ARACHNE_CAMPAIGN are required")
        return cls(
            s["ARACHNE_SETTINGS"],
            s["ARACHNE_REDIS_URL"],
            s["ARACHNE_CAMPAIGN"],
            crawler.stats,
            s.get("ARACHNE_PRIORITY", "normal"),
        )

    def open_spider(self) -> None:
        redis = redis_from_url(self.redis_url)
        self.enqueuer = Enqueuer(
            redis,
            image_queue(redis, self.settings, self.priority),
            self.campaign,
            batch_size=self.settings.batch_size,
            retries=self.settings.job_retries,
            retry_backoff=self.settings.retry_backoff,
            job_timeout=self.settings.job_timeout,
        )

    def process_item(self, item: Any) -> Any:
        if isinstance(item, ImageRef):
            self._chunk.append(item)
            if len(self._chunk) >= CHUNK:
                self._drain()
        return item

    def close_spider(self) -> None:
        try:
            self._drain()
        finally:
            if self.enqueuer is not None:
                self.enqueuer.flush()

    def _drain(self) -> None:
        if self.enqueuer is None or not self._chunk:
            return
        try:
            self.enqueuer.add(self._chunk)
        except Exception:
            # Redis unreachable: keep the refs (they were never marked seen) and make the
            # crawl exit non-zero so the operator knows the campaign is incomplete.
            self.failed = True
            if self.crawl_stats is not None:
                self.crawl_stats.inc_value(PIPELINE_FAILURES)
            raise
        self.enqueuer.stats.inc(st.IMAGES_FOUND, len(self._chunk))
        self._chunk = []
