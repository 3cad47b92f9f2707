"""Runs one crawl in its own process (Scrapy's reactor starts once per process) and prints
its stats as JSON on the last stdout line: ``python -m tests.crawl_probe MODE ARGS_JSON``.

Modes: ``rule`` crawls with a plain spider and the page guard allowing only the addresses
in ``allowed``; ``arachne`` crawls through ``arachne.crawler.runner.run_crawl`` itself.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any

import scrapy
from scrapy.crawler import Crawler, CrawlerProcess

from arachne.crawler.middlewares import PublicAddressGuard


class AllowListedGuard(PublicAddressGuard):
    """The production guard with a test rule: only ``PROBE_ALLOWED`` addresses pass."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> AllowListedGuard:
        allowed = set(crawler.settings.getlist("PROBE_ALLOWED"))
        assert crawler.stats is not None
        return cls(crawler.stats, is_allowed=allowed.__contains__)


class SeedSpider(scrapy.Spider):
    name = "probe"

    def parse(self, response: scrapy.http.Response) -> None:
        self.crawler.stats.inc_value("probe/parsed")


def _rule(args: dict[str, Any]) -> dict[str, Any]:
    process = CrawlerProcess(
        {
            "ROBOTSTXT_OBEY": False,
            "TELNETCONSOLE_ENABLED": False,
            "RETRY_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "DOWNLOADER_MIDDLEWARES": {"tests.crawl_probe.AllowListedGuard": 50},
            "PROBE_ALLOWED": args["allowed"],
        }
    )
    crawler = process.create_crawler(SeedSpider)
    process.crawl(crawler, start_urls=args["seeds"])
    process.start()
    return dict(crawler.stats.get_stats()) if crawler.stats else {}


def _arachne(args: dict[str, Any]) -> dict[str, Any]:
    from arachne.crawler.runner import run_crawl
    from arachne.crawler.scope import Scope
    from arachne.settings import Settings

    settings = Settings(data_dir=args["data_dir"], **args["settings"])
    scope = Scope.for_seeds(args["seeds"], robots=args.get("robots", "obey"))
    # A campaign of its own each time: every probe crawls from an empty frontier.
    campaign = args.get("campaign") or f"probe-{uuid.uuid4().hex[:8]}"
    return run_crawl(settings, args["redis_url"], campaign, args["seeds"], scope)


def run_probe(mode: str, args: dict[str, Any], timeout: float = 120) -> tuple[dict[str, Any], str]:
    """Run this module as a crawl in a subprocess; returns (its stats, its stderr)."""
    import subprocess
    from pathlib import Path

    proc = subprocess.run(
        [sys.executable, "-m", "tests.crawl_probe", mode, json.dumps(args)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, raw = sys.argv[1], json.loads(sys.argv[2])
    stats = (_rule if mode == "rule" else _arachne)(raw)
    print(json.dumps(stats, default=str))
