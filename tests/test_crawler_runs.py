"""Real `arachne crawl` processes on one run's shared frontier: `kill -9` mid-crawl loses no
URL, two processes share one campaign within the per-host limit, and a finished run makes
the next crawl a new run that re-visits every page. Loopback site with ground truth."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from arachne.crawler.frontier import Frontier
from arachne.queue import keys
from arachne.queue.connection import image_queues
from arachne.settings import Settings
from arachne.urls import url_key
from tests.frontier_site import SiteState, tree_site

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("ARACHNE_")}
    out.update(
        ARACHNE_CONFIG=str(tmp_path / "none.toml"),
        ARACHNE_DATA_DIR=str(tmp_path / "data"),
        REDIS_URL=redis_url,
        ARACHNE_ALLOW_PRIVATE_NETWORKS="true",  # the site is on loopback
        ARACHNE_CRAWL_LEASE_SECONDS="3",
    )
    yield out
    # A process left running would go on taking jobs from the shared test Redis and
    # fail later tests that have nothing to do with it: stop it, and fail this one.
    orphans = leftovers(out)
    for pid in orphans:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not orphans, f"arachne processes outlived the test: {orphans}"


def arachne(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arachne", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "arachne", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def create(env: dict[str, str], name: str, site: SiteState) -> None:
    hosts = [arg for host in site.host_names() for arg in ("--allow-host", host)]
    done = arachne(
        env, "campaign", "create", name, "--seed", site.page(0), *hosts,
        "--max-depth", "30", "--max-pages", "5000", "--robots", "ignore",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def queued_images(redis: Redis, name: str, run: int) -> set[str]:
    """Image URLs in the run's jobs (the rq queue: no worker runs in these tests)."""
    urls = set()
    for queue in image_queues(redis, Settings()):
        for job in queue.get_jobs():
            if job.args[0] == name and job.args[2] == run:
                urls.update(ref["url"] for ref in job.args[1])
    return urls


def leftovers(env: dict[str, str]) -> list[int]:
    """Arachne processes still running with this test's data dir (orphans)."""
    mark = f"ARACHNE_DATA_DIR={env['ARACHNE_DATA_DIR']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def slow_site() -> Iterator[SiteState]:
    with tree_site(pages=150, delay=0.15) as site:
        yield site


def test_kill_9_mid_crawl_loses_no_url(
    env: dict[str, str], redis_client: Redis, slow_site: SiteState
) -> None:
    site = slow_site
    env["ARACHNE_PER_HOST_CONCURRENCY"] = "2"  # ~13 pages/s: time to kill it midway
    create(env, "k9", site)
    first = spawn(env, "crawl", "k9")
    wait_for(lambda: site.pages_hit() >= 40)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    hit_before = site.pages_hit()
    assert hit_before < site.pages, "the crawl was killed before it finished"
    frontier = Frontier(redis_client, "k9", 1)
    assert frontier.counts()["leased"] > 0, "the dead process held leases"

    second = arachne(env, "crawl", "k9")
    assert second.returncode == 0, second.stderr
    assert "resuming run 1 of 'k9'" in second.stderr

    lost_pages = site.page_urls() - set(site.hits)
    lost_images = site.image_urls() - queued_images(redis_client, "k9", 1)
    counts = frontier.counts()
    twice = sum(1 for path, n in site.hits.items() if n > 1)
    print(
        f"kill -9 after {hit_before} of {site.pages} pages: pages lost {len(lost_pages)}, "
        f"images lost {len(lost_images)}, leases reclaimed {counts['reclaimed']}, "
        f"pages fetched twice {twice}"
    )
    assert lost_pages == set() and lost_images == set(), "URLs lost: must be 0"
    assert counts["reclaimed"] > 0 and frontier.drained()
    assert twice <= counts["reclaimed"], "only the dead process's unfinished pages twice"
    seen = redis_client.smembers(keys.run_seen("k9", 1))
    assert {url_key(u).encode() for u in site.image_urls()} <= seen


def test_two_processes_share_a_run_within_the_per_host_limit(
    env: dict[str, str], redis_client: Redis
) -> None:
    # 3 hosts x 3 pages at once = 9 fetches, more than one process's 4: both get work.
    env["ARACHNE_PER_HOST_CONCURRENCY"] = "3"
    env["ARACHNE_CRAWL_CONCURRENCY"] = "4"
    with tree_site(pages=240, delay=0.2, hosts=3) as site:  # ~6 s with both
        create(env, "two", site)
        procs = [spawn(env, "crawl", "two") for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    responses = [int(err.split("finished: ")[1].split(" responses")[0]) for _, err in outs]
    assert all(n > 0 for n in responses), f"both processes crawled: {responses}"
    # Each page once between them, and each host's robots.txt and /sitemap.xml once a run.
    assert sum(responses) == site.pages + 2 * site.hosts
    assert set(site.hits.values()) == {1}
    print(f"two processes: responses {responses}, most pages at once per host {site.max_active}")
    assert max(site.max_active.values()) <= 3, f"over the per-host limit: {site.max_active}"
    assert queued_images(redis_client, "two", 1) == site.image_urls()


def test_a_finished_run_makes_the_next_crawl_a_new_run(
    env: dict[str, str], redis_client: Redis
) -> None:
    with tree_site(pages=30) as site:
        create(env, "again", site)
        first = arachne(env, "crawl", "again")
        assert first.returncode == 0 and "starting run 1 of 'again'" in first.stderr
        second = arachne(env, "crawl", "again")
        assert second.returncode == 0, second.stderr
        assert "starting run 2 of 'again'" in second.stderr
    assert set(site.hits.values()) == {2}, "every page re-visited by run 2"
    assert queued_images(redis_client, "again", 2) == site.image_urls(), "images re-queued"
    stats = arachne(env, "stats", "again", "--json")
    summary = json.loads(stats.stdout)
    assert [(r["number"], r["status"]) for r in summary["runs"]] == [(1, "done"), (2, "done")]
    assert [r["figures"]["pages"] for r in summary["runs"]] == [30, 30]
    assert summary["pages"] == 60, "the total is over every run"
    assert summary["run"] == {"number": 2, "status": "done"}


def test_spiders_and_workers_together_stay_within_the_per_host_limit(
    env: dict[str, str], redis_client: Redis
) -> None:
    # Two spider processes and two workers, each allowed more than the host limit on its
    # own: the site counts what it serves at once per host, pages and images together.
    env["ARACHNE_PER_HOST_CONCURRENCY"] = "2"
    with tree_site(pages=60, delay=0.05, hosts=2) as site:
        create(env, "polite", site)
        run = spawn(env, "run", "polite", "--workers", "2", "--json")
        extra = spawn(env, "crawl", "polite")
        t0 = time.monotonic()
        out, err = run.communicate(timeout=240)
        _, extra_err = extra.communicate(timeout=60)
        took = time.monotonic() - t0
    assert extra.returncode == 0, extra_err[-3000:]
    assert run.returncode == 0, err[-3000:]
    summary = json.loads(out)
    print(
        f"politeness: most requests at once per host {dict(site.max_active)} (limit 2); "
        f"{sum(site.hits.values())} page and {sum(site.image_hits.values())} image requests "
        f"in {took:.1f} s"
    )
    assert max(site.max_active.values()) <= 2, dict(site.max_active)
    assert set(site.hits) == site.page_urls()
    assert set(site.image_hits) == site.image_urls(), "every image fetched by the workers"
    assert summary["images_fetched"] == len(site.image_urls())


def test_pause_resume_and_cancel_reach_a_running_crawl(
    env: dict[str, str], redis_client: Redis, slow_site: SiteState
) -> None:
    site = slow_site
    env["ARACHNE_PER_HOST_CONCURRENCY"] = "2"
    create(env, "ctl", site)
    crawl = spawn(env, "crawl", "ctl")
    wait_for(lambda: site.pages_hit() >= 15)
    paused = arachne(env, "campaign", "pause", "ctl")
    assert paused.returncode == 0 and "run 1 of 'ctl' paused" in paused.stdout
    time.sleep(1.0)  # what was in flight finishes
    hits = site.pages_hit()
    time.sleep(2.0)
    assert site.pages_hit() == hits, "no page requested while paused"
    refused = arachne(env, "run", "ctl")
    assert refused.returncode == 2 and "is paused" in refused.stderr
    assert arachne(env, "campaign", "resume", "ctl").returncode == 0
    wait_for(lambda: site.pages_hit() >= hits + 15)
    assert arachne(env, "campaign", "cancel", "ctl").returncode == 0
    _, err = crawl.communicate(timeout=30)
    assert crawl.returncode == 0 and "was cancelled" in err, err[-2000:]
    assert site.pages_hit() < site.pages, "cancelled before the end"
    shown = json.loads(arachne(env, "campaign", "show", "ctl", "--json").stdout)
    assert shown["summary"]["run"] == {"number": 1, "status": "cancelled"}
    assert Frontier(redis_client, "ctl", 1).counts()["queued"] == 0, "its frontier freed"
    again = arachne(env, "crawl", "ctl")
    assert again.returncode == 0 and "starting run 2 of 'ctl'" in again.stderr


def test_every_starts_new_runs_with_known_bad_hosts_first(
    env: dict[str, str], redis_client: Redis, tmp_path: Path
) -> None:
    from arachne.matcher.hashing import hash_image_bytes
    from tests.imageserver import make_image

    known = tmp_path / "known.txt"  # the picture page 1 shows, on 127.0.0.2
    known.write_text(f"md5 {hash_image_bytes(make_image(1)).md5}\n")
    assert arachne(env, "lists", "import", str(known), "--name", "k").returncode == 0
    with tree_site(pages=8, hosts=2) as site:
        create(env, "every", site)
        proc = spawn(env, "run", "every", "--every", "1s", "--workers", "1")
        wait_for(lambda: redis_client.exists(keys.run_matched("every", 2)), timeout=120)
        proc.send_signal(signal.SIGINT)  # as run 2 starts its workers and crawl
        _, err = proc.communicate(timeout=60)
    assert "next run of 'every'" in err, err[-2000:]
    assert leftovers(env) == [], "no worker or crawl outlives an interrupted run"
    # Run 2 was told, before it crawled, which host served matches in run 1.
    assert redis_client.hgetall(keys.run_matched("every", 2)).keys() == {b"127.0.0.2"}
    summary = json.loads(arachne(env, "stats", "every", "--json").stdout)
    assert summary["runs"][0]["status"] == "done" and len(summary["runs"]) >= 2
    assert summary["matches"]["urls"] == 2


def test_a_hostile_site_is_recorded_and_the_crawl_goes_on(
    env: dict[str, str], redis_client: Redis
) -> None:
    from tests.hostile_site import GOOD, hostile_site

    env.update(ARACHNE_PAGE_TIMEOUT="1.5", ARACHNE_PAGE_MAX_BYTES=str(2 * 1024 * 1024))
    with hostile_site(slow=4.0) as site:
        done = arachne(
            env, "campaign", "create", "hostile", "--seed", site.base + "/",
            "--max-pages", "60", "--robots", "ignore",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        started = time.monotonic()
        crawl = spawn(env, "crawl", "hostile")
        peak_kb = 0
        while crawl.poll() is None:  # the crawl's peak memory, while it runs
            status = Path(f"/proc/{crawl.pid}/status")
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM"):  # absent once it has exited
                        peak_kb = max(peak_kb, int(line.split()[1]))
            assert time.monotonic() - started < 180, "the crawl must end"
            time.sleep(0.2)
        took = time.monotonic() - started
        _, err = crawl.communicate()
        hits = dict(site.hits)
    assert crawl.returncode == 0 and "Traceback" not in err, err[-3000:]
    summary = json.loads(arachne(env, "stats", "hostile", "--json").stdout)
    reasons = summary["page_errors_by_reason"]
    print(f"hostile site: {took:.1f} s, crawl peak RSS {peak_kb // 1024} MB, errors {reasons}")
    assert all(hits.get(p) for p in GOOD), "every good page crawled, past the bad ones"
    assert {"/ok1", "/ok2", "/ok3"} <= set(hits), "links of malformed and mis-encoded pages"
    assert queued_images(redis_client, "hostile", 1) == {
        f"{site.base}/img/{i}.jpg" for i in range(len(GOOD))
    }
    # Each is recorded with its reason.
    assert reasons["DownloadTimeoutError"] == 2, reasons  # /slow and /stall, after retries
    assert reasons["DownloadCancelledError"] == 2, reasons  # 2 GB, announced and chunked
    assert reasons["IgnoreRequest"] == 2, reasons  # the gzip bomb and the redirect loop
    assert reasons["http_429"] == 3, "three tries, then given up"
    assert hits.get("/loop1", 0) <= 12, "the redirect loop is cut off"
    assert 0 < hits.get("/calendar", 0) < 60, "the infinite calendar ends at the page budget"
    # Our own cut-offs do not slow the host down: only 2 timeouts and a 429 count.
    assert took < 90 and peak_kb < 400 * 1024, "bounded time and memory"
