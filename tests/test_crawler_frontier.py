"""The run's frontier in Redis: exact dedup, breadth-first per host, leases that come back,
per-host limits and budgets. On the test Redis and on the embedded Valkey."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from arachne.crawler.frontier import (
    SEEN_BUCKETS,
    Budgets,
    Entry,
    Frontier,
    fingerprint,
    forget_campaign,
)
from arachne.queue import keys
from tests.conftest import REDIS_TEST_URL


@pytest.fixture(params=["redis", "valkey"])
def redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Redis]:
    if request.param == "redis":
        client = Redis.from_url(REDIS_TEST_URL)
        client.flushdb()
        yield client
        client.flushdb()
        return
    from arachne.queue.connection import redis_url_for
    from arachne.settings import Settings

    with redis_url_for(Settings(data_dir=tmp_path)) as url:  # the embedded default
        yield Redis.from_url(url)


def pages(host: str, n: int, depth: int = 0) -> list[Entry]:
    return [Entry(f"http://{host}/p{i}.html", host, depth=depth) for i in range(n)]


def test_dedup_is_exact_per_kind_and_survives_a_new_client(redis: Redis) -> None:
    f = Frontier(redis, "c", 1)
    assert f.add(pages("a.test", 3)).added == 3
    again = Frontier(redis, "c", 1).add(pages("a.test", 4))  # another spider process
    assert (again.added, again.duplicate) == (1, 3)
    # The same URL as another kind (a sitemap at a page's address) is its own entry.
    assert f.add([Entry("http://a.test/p0.html", "a.test", kind="sitemap")]).added == 1
    # Another run, or another campaign, has a frontier of its own.
    assert Frontier(redis, "c", 2).add(pages("a.test", 4)).added == 4
    assert Frontier(redis, "d", 1).add(pages("a.test", 4)).added == 4


def test_dedup_compares_the_key_url(redis: Redis) -> None:
    f = Frontier(redis, "c", 1)
    one = Entry("http://a.test/x?utm_source=m&id=1", "a.test", key_url="http://a.test/x?id=1")
    two = Entry("http://a.test/x?id=1&utm_source=n", "a.test", key_url="http://a.test/x?id=1")
    assert f.add([one]).added == 1 and f.add([two]).duplicate == 1
    (lease,) = f.lease(5)
    assert lease.url == one.url, "the URL as found is fetched; the key only deduplicates"


def test_fingerprints_spread_over_the_buckets() -> None:
    buckets = {int(fingerprint("page", f"http://a.test/{i}").split(":")[0]) for i in range(5000)}
    assert len(buckets) > 4000 and max(buckets) < SEEN_BUCKETS


def test_seen_sets_stay_packed_integer_sets(redis: Redis) -> None:
    f = Frontier(redis, "c", 1)
    f.add(pages("a.test", 2000))
    seen = [k for k in redis.scan_iter(match=keys.frontier("c", 1) + ":seen:*", count=1000)]
    assert sum(int(redis.scard(k)) for k in seen) == 2000
    encodings = {redis.object("encoding", k) for k in seen}
    assert encodings == {b"intset"}, "members must be integers Redis can pack (8 bytes each)"


def test_breadth_first_within_a_host_fifo_within_a_depth(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, per_host=100)
    f.add([Entry("http://a.test/deep", "a.test", depth=2)])
    f.add([Entry(f"http://a.test/d1-{i}", "a.test", depth=1) for i in range(3)])
    f.add([Entry("http://a.test/", "a.test", depth=0)])
    order = [lease.url for lease in f.lease(10)]
    assert order == [
        "http://a.test/",
        "http://a.test/d1-0",
        "http://a.test/d1-1",
        "http://a.test/d1-2",
        "http://a.test/deep",
    ]


def test_leases_go_round_robin_and_respect_per_host_concurrency(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, per_host=2)
    f.add(pages("a.test", 5) + pages("b.test", 5) + pages("c.test", 1))
    first = f.lease(100)
    by_host = sorted(lease.host for lease in first)
    assert by_host == ["a.test", "a.test", "b.test", "b.test", "c.test"]
    assert f.lease(100) == [], "every host is at its limit (or empty)"
    # Another spider process is held to the same limit: it is the frontier's, not a process's.
    assert Frontier(redis, "c", 1, per_host=2).lease(100) == []
    a = [lease.id for lease in first if lease.host == "a.test"]
    assert f.confirm(a[:1]) == 1
    (nxt,) = f.lease(100)
    assert nxt.host == "a.test"
    counts = f.counts()
    assert (counts["queued"], counts["leased"], counts["confirmed"]) == (5, 5, 1)


def test_a_lease_not_confirmed_in_time_comes_back(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, lease_seconds=0.3)
    f.add(pages("a.test", 2))
    held = f.lease(10)
    assert len(held) == 2 and f.lease(10) == []
    time.sleep(0.4)  # the spider that held them died
    again = Frontier(redis, "c", 1, lease_seconds=30).lease(10)
    assert sorted(lease.url for lease in again) == sorted(lease.url for lease in held)
    assert f.counts()["reclaimed"] == 2
    # The dead spider's late confirm is harmless: the page was done; counted once.
    same = next(lease for lease in again if lease.id == held[0].id)
    assert f.confirm([held[0].id]) == 1 and f.confirm([same.id]) == 0
    assert f.counts()["leased"] == 1


def test_renewed_leases_are_kept_and_released_ones_return_at_once(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, lease_seconds=0.5)
    f.add(pages("a.test", 2))
    one, two = f.lease(10)
    for _ in range(3):
        time.sleep(0.25)
        assert f.renew([one.id, two.id]) == 2
    assert f.lease(10) == [], "renewed leases did not expire"
    assert f.release([one.id]) == 1
    (back,) = f.lease(10)
    assert back.url == one.url and f.counts()["released"] == 1


def test_budgets_cap_pages_per_run_and_per_host_but_not_other_kinds(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, budgets=Budgets(pages=5, pages_per_host=3, other={"sitemap": 1}))
    result = f.add(pages("a.test", 4) + pages("b.test", 4))
    assert (result.added, result.capped_host, result.capped) == (5, 1, 2)
    sitemaps = [Entry(f"http://a.test/s{i}.xml", "a.test", kind="sitemap") for i in range(3)]
    assert f.add(sitemaps).added == 1
    css = [Entry(f"http://a.test/{i}.css", "a.test", kind="stylesheet") for i in range(3)]
    assert f.add(css).added == 3, "no budget named: no cap, and not counted as pages"
    counts = f.counts()
    assert (counts["budget/page"], counts["budget/sitemap"]) == (5, 1)


def test_per_host_delay_spaces_leases(redis: Redis) -> None:
    f = Frontier(redis, "c", 1, per_host=4, delay=0.3)
    f.add(pages("a.test", 3) + pages("b.test", 1))
    assert sorted(lease.host for lease in f.lease(10)) == ["a.test", "b.test"]
    assert f.lease(10) == [], "a.test may not be asked again before its delay"
    time.sleep(0.35)
    assert [lease.host for lease in f.lease(10)] == ["a.test"]


def test_drained_only_when_nothing_is_queued_or_leased(redis: Redis) -> None:
    f = Frontier(redis, "c", 1)
    assert f.drained()
    f.add(pages("a.test", 1))
    assert not f.drained()
    (lease,) = f.lease(1)
    assert not f.drained(), "a leased page is not done yet"
    f.confirm([lease.id])
    assert f.drained()


def test_forget_campaign_deletes_its_runs_and_nothing_else(redis: Redis) -> None:
    for campaign, run in (("c", 1), ("c", 2), ("other", 1)):
        Frontier(redis, campaign, run).add(pages("a.test", 3))
        redis.hset(keys.run_stats(campaign, run), "crawl/pages", 1)
    redis.hset(keys.campaign_stats("c"), "crawl/pages", 2)
    assert forget_campaign(redis, "c") > 0
    left = {k.decode() for k in redis.scan_iter(count=1000)}
    assert left and all(k.startswith("arachne:campaign:other:") for k in left)


def test_hosts_with_matches_are_served_first(redis: Redis) -> None:
    from arachne.queue.feedback import RunFeedback

    f = Frontier(redis, "c", 1, per_host=1)
    for host in ("a.test", "b.test", "c.test"):
        f.add(pages(host, 2))
        time.sleep(0.01)  # distinct arrival times: a before b before c
    first = f.lease(1)[0]
    assert first.host == "a.test"
    RunFeedback(redis, "c", 1).matched(["c.test"])  # a worker found a match on c
    f.prefer(["c.test"])
    (nxt,) = f.lease(1)
    assert nxt.host == "c.test", "a host with matches goes ahead of the others"
    f.confirm([first.id, nxt.id])
    assert f.lease(1)[0].host == "c.test", "and stays ahead while it has pages"
