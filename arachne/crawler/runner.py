"""Run one campaign's crawl in this process (Scrapy's reactor runs once per process)."""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import CrawlerProcess

from arachne.crawler.frontier import Budgets
from arachne.crawler.pipelines import PIPELINE_FAILURES
from arachne.crawler.scope import Scope
from arachne.crawler.spiders.campaign import CampaignSpider, budgets
from arachne.settings import Settings

ROBOTS_MIDDLEWARE = "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"


def scrapy_settings(
    settings: Settings,
    redis_url: str,
    campaign: str,
    priority: str = "normal",
    robots: str = "obey",
    *,
    run: int = 1,
    budgets: Budgets | None = None,
) -> dict[str, Any]:
    # Before robots.txt (100): a refused host is never asked for its robots.txt either.
    middlewares: dict[str, int | None] = {"arachne.crawler.middlewares.PublicAddressGuard": 50}
    if robots == "record":  # robots.txt read and what it disallows counted, then crawled
        middlewares[ROBOTS_MIDDLEWARE] = None
        middlewares["arachne.crawler.middlewares.RecordingRobotsTxt"] = 100
    return {
        "BOT_NAME": "arachne",
        "USER_AGENT": settings.agent,
        "ROBOTSTXT_OBEY": settings.obey_robots and robots != "ignore",
        "CONCURRENT_REQUESTS": settings.crawl_concurrency,
        # The frontier paces hosts for the whole cluster (politeness.py); Scrapy's own
        # per-domain cap only keeps one process from asking for more than it may have.
        "CONCURRENT_REQUESTS_PER_DOMAIN": settings.per_host_concurrency,
        "DOWNLOAD_DELAY": 0,
        # 429 and 503 are the host asking us to slow down: the page goes back to the
        # frontier, which waits for the host (Retry-After, back-off) before asking again.
        "RETRY_HTTP_CODES": [500, 502, 504, 522, 524, 408],
        "DOWNLOAD_TIMEOUT": settings.page_timeout,
        # Pages only (images never go through Scrapy); also caps a gzip bomb's output.
        "DOWNLOAD_MAXSIZE": settings.page_max_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_TIMES": 2,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "LOG_INSTALL_ROOT_HANDLER": False,  # the CLI configured logging already
        "DEPTH_LIMIT": 0,  # the spider enforces scope.max_depth itself
        # The run's shared frontier in Redis instead of Scrapy's in-memory queues.
        "SCHEDULER": "arachne.crawler.scheduler.FrontierScheduler",
        # One output at a time: a page's PageDone reaches the pipeline after its images
        # and links, so its lease is confirmed only once they are queued.
        "CONCURRENT_ITEMS": 1,
        "DOWNLOADER_MIDDLEWARES": middlewares,
        "ITEM_PIPELINES": {"arachne.crawler.pipelines.QueuePipeline": 100},
        "EXTENSIONS": {"arachne.crawler.extensions.LiveStats": 100},
        "ARACHNE_SETTINGS": settings,
        "ARACHNE_REDIS_URL": redis_url,
        "ARACHNE_CAMPAIGN": campaign,
        "ARACHNE_PRIORITY": priority,
        "ARACHNE_RUN": run,
        "ARACHNE_BUDGETS": budgets,
    }


def run_crawl(
    settings: Settings,
    redis_url: str,
    campaign: str,
    seeds: list[str],
    scope: Scope,
    run: int = 1,
) -> dict[str, Any]:
    """Work on run ``run`` of the campaign until its frontier is drained (every spider
    process of the run stops then); returns Scrapy's stats."""
    level = logging.getLogger().level or logging.WARNING
    process = CrawlerProcess(
        scrapy_settings(
            settings,
            redis_url,
            campaign,
            scope.priority,
            scope.robots,
            run=run,
            budgets=budgets(scope),
        )
    )
    crawler = process.create_crawler(CampaignSpider)
    process.crawl(crawler, campaign=campaign, seeds=seeds, scope=scope)
    # Scrapy lowers the root logger to DEBUG; keep the CLI's choice (-v or not).
    logging.getLogger().setLevel(level)
    process.start()
    stats = dict(crawler.stats.get_stats()) if crawler.stats else {}
    # Scrapy only logs a pipeline error; references that could not be queued make the
    # crawl incomplete, which the caller must say.
    stats["arachne/failed"] = bool(stats.get(PIPELINE_FAILURES))
    return stats
