"""What the workers tell the crawl of a run: which hosts serve matches.

A match raises its hosts in the run's frontier (``Frontier`` reads ``run_matched``: their
queues go first) and restarts their count of pages crawled without a match, which the
campaign's stop rule (``--stop-after N``) reads: a site that gave N pages in a row and no
match has its links no longer followed. The counts are what the workers have matched so
far: they lag the crawl by the time a batch takes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from redis import Redis

from arachne.queue import keys

SYNC_SECONDS = 0.5
"""How often a spider writes its page counts and reads the shared ones."""


class RunFeedback:
    def __init__(self, redis: Redis, campaign: str, run: int) -> None:
        self.redis = redis
        self.matched_key = keys.run_matched(campaign, run)
        self.nomatch_key = keys.run_nomatch(campaign, run)
        self._pending: Counter[str] = Counter()
        self._counts: dict[str, int] = {}
        self._synced = 0.0

    # -- workers ----------------------------------------------------------------------
    def matched(self, hosts: Iterable[str]) -> None:
        hosts = sorted({h for h in hosts if h})
        if not hosts:
            return
        now = int(time.time())
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.hset(self.matched_key, host, now)
            pipe.hset(self.nomatch_key, host, 0)
        pipe.execute()

    # -- spiders ----------------------------------------------------------------------
    def crawled(self, host: str) -> None:
        self._pending[host] += 1
        self._counts[host] = self._counts.get(host, 0) + 1

    def pages_without_match(self, host: str) -> int:
        """Pages crawled on ``host`` since its last match (every spider of the run)."""
        if time.monotonic() - self._synced > SYNC_SECONDS:
            self.sync()
        return self._counts.get(host, 0)

    def sync(self) -> None:
        self._synced = time.monotonic()
        pending, self._pending = self._pending, Counter()
        pipe = self.redis.pipeline(transaction=False)
        for host, n in pending.items():
            pipe.hincrby(self.nomatch_key, host, n)
        hosts = sorted(self._counts)
        if hosts:
            pipe.hmget(self.nomatch_key, hosts)
        replies = pipe.execute()
        if hosts:
            self._counts = {h: int(v or 0) for h, v in zip(hosts, replies[-1], strict=True)}
