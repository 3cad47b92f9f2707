"""Item pipeline: batches ImageRefs and hands them to the queue, then lets the scheduler
confirm the leases of the pages they came from."""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.signalmanager import SignalManager
from scrapy.statscollectors import StatsCollector
from twisted.internet import task

from arachne.crawler.scheduler import PageDone, leases_done
from arachne.queue import stats as st
from arachne.queue.connection import image_queue, redis_from_url
from arachne.queue.enqueue import Enqueuer, ImageRef, InlineImage
from arachne.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 100  # refs checked against Redis in one round trip
PIPELINE_FAILURES = "arachne/queue_failures"  # Scrapy stat: chunks that could not be queued
IMAGE_REFS = "arachne/image_refs"  # Scrapy stat: image references handed to the queue
FLUSH_SECONDS = 1.0
"""Partial batches are queued at least this often: workers start early, and finished
pages' leases are confirmed (their images are safely queued by then)."""


class QueuePipeline:
    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        campaign: str,
        stats: StatsCollector | None = None,
        priority: str = "normal",
        signals: SignalManager | None = None,
        run: int = 1,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.campaign = campaign
        self._chunk: list[ImageRef] = []
        self.enqueuer: Enqueuer | None = None
        self.failed = False
        self.crawl_stats = stats
        self.priority = priority
        self.signals = signals
        self.run = run
        self._done: list[str] = []  # leases whose pages' refs are in _chunk or the buffer
        self._inline: list[InlineImage] = []
        self._timer: task.LoopingCall | None = None

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
            crawler.signals,
            s.getint("ARACHNE_RUN", 1),
        )

    def open_spider(self) -> None:
        redis = redis_from_url(self.redis_url)
        self.enqueuer = Enqueuer(
            redis,
            image_queue(redis, self.settings, self.priority),
            self.campaign,
            run=self.run,
            batch_size=self.settings.batch_size,
            retries=self.settings.job_retries,
            retry_backoff=self.settings.retry_backoff,
            job_timeout=self.settings.job_timeout,
        )
        self._timer = task.LoopingCall(self._tick)
        self._timer.start(FLUSH_SECONDS, now=False)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, ImageRef):
            self._chunk.append(item)
            if len(self._chunk) >= CHUNK:
                self._drain()
        elif isinstance(item, InlineImage):
            self._inline.append(item)
        elif isinstance(item, PageDone):
            self._done.append(item.lease)
        return item

    def close_spider(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self.flush()

    def flush(self) -> None:
        """Queue everything buffered, then confirm the pages it came from."""
        done, self._done = self._done, []
        try:
            self._drain()
            if self.enqueuer is not None:
                self.enqueuer.flush()
                if self._inline:
                    self.enqueuer.add_inline(self._inline)
                    self._inline = []
        except Exception:
            self._done = done + self._done  # not queued: their leases stay unconfirmed
            raise
        if done and self.signals is not None:
            self.signals.send_catch_log(signal=leases_done, leases=done)

    def _tick(self) -> None:
        try:
            self.flush()
        except Exception:
            # Redis unreachable: the leases stay held and are retried on the next tick
            # (or run out and are crawled again); the crawl will exit non-zero.
            log.exception("could not queue image references; retrying")

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
        if self.crawl_stats is not None:
            self.crawl_stats.inc_value(IMAGE_REFS, len(self._chunk))
        self._chunk = []
