"""Dashboard pages, their live JSON and the charts' series: real SQLite store, real Redis (db 8),
real rq jobs and workers, the app served by aiohttp's TestServer behind its login."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import select

from arachne.dashboard import series
from arachne.queue import keys
from arachne.queue import stats as st
from arachne.queue.connection import image_queue
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import (
    AuditLog,
    Campaign,
    HashEntry,
    HashList,
    Host,
    Image,
    Incident,
    Match,
    Notice,
    Sighting,
)
from arachne.store.users import add_user, create_token
from tests.console import bearer as auth
from tests.console import client_for, closed_port_url, flushed_redis

REDIS_URL = "redis://127.0.0.1:6379/8"
LISTS = Path(__file__).parent / "data" / "lists"
PDQ_VALUE = "e" * 64  # a list entry's hash: must never reach a page
MATCHED = "http://bad.example/a.jpg?x=<b>"
LIVE = {st.PAGES_CRAWLED: 1234, st.IMAGES_FETCHED: 530, "fetch/error/timeout": 7}


def failing_batch(campaign: str, refs: list[Any], run: int = 1) -> None:
    """What the worker runs for the failed job: fails the way a broken batch does."""
    raise ValueError(f"boom: batch of {campaign} could not be read\nsecond line")


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[Redis]:
    yield from flushed_redis(REDIS_URL)


def make_settings(data_dir: Path, redis_url: str | None) -> Settings:
    return Settings(
        data_dir=data_dir, redis_url=redis_url, database_url=None, queue_name="arachne-pages"
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, REDIS_URL)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    with store.session() as session:
        seed(session)
    yield store
    store.dispose()


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    with store.session() as s:
        add_user(s, "root", "admin", "correct horse battery", actor="test")
        _, viewer = create_token(s, "viewer-bot", "viewer", actor="test")
        _, operator = create_token(s, "operator-bot", "operator", actor="test")
        _, admin = create_token(s, "admin-bot", "admin", actor="test")
    return {"viewer": viewer, "operator": operator, "admin": admin}


def seed(session: Any) -> None:
    when = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    running = Campaign(
        name="spring-sweep", seeds=["http://bad.example/"], scope={}, status="running",
        created_at=when, started_at=when, stats={st.PAGES_CRAWLED: 999, "fetch/error/too_large": 4},
    )  # fmt: skip
    finished = Campaign(
        name="old-sweep", seeds=["http://old.example/"], scope={}, status="done",
        stats={st.PAGES_CRAWLED: 31}, created_at=datetime(2026, 10, 1, tzinfo=UTC),
    )  # fmt: skip
    session.add_all([running, finished])
    images = [Image(sha256=c * 64, md5=c * 32, sha1=c * 40, pdq=c * 64, size=100) for c in "ab"]
    hash_list = HashList(name="sample-list", format="pdq")
    entry = HashEntry(hash_list=hash_list, kind="pdq", value=PDQ_VALUE, category="B2")
    session.add_all([*images, entry])
    session.flush()

    def sighting(url: str, host: str, image: Image | None, error: str | None = None) -> Sighting:
        return Sighting(
            campaign_id=running.id, url_key=url[-40:], image_url=url, page_url=f"http://{host}/",
            host=host, image=image, error=error,
            error_detail=f"{error} after 10 s" if error else None,
        )  # fmt: skip

    matched = sighting(MATCHED, "bad.example", images[0])
    session.add_all(
        [
            matched,
            sighting("http://clean.example/ok.jpg", "clean.example", images[1]),
            sighting("http://clean.example/slow1.jpg", "clean.example", None, "timeout"),
            sighting("http://clean.example/slow2.jpg", "clean.example", None, "timeout"),
            sighting("http://slow.example/big.jpg", "slow.example", None, "too_large"),
        ]
    )
    session.flush()
    session.add(
        Match(campaign_id=running.id, sighting_id=matched.id, entry_id=entry.id, kind="near",
              hash_kind="pdq", distance=12)
    )  # fmt: skip
    bad = Host(
        hostname="bad.example", abuse_email="abuse@bad.example", provider="BadHost", country="NL"
    )
    session.add(bad)
    session.flush()
    session.add_all(
        [
            Notice(reference="ARN-0001", campaign_id=running.id, host_id=bad.id, urls=[MATCHED],
                   url_set_hash="h1", recipient="abuse@bad.example", xarf={}, body="...",
                   status="sent", attempts=2, sent_at=when, created_at=when),
            # Values a spreadsheet would run as formulas: the CSV export must defuse them.
            Notice(reference="ARN-0002", campaign_id=running.id, host_id=bad.id, urls=[MATCHED],
                   url_set_hash="h2", recipient='=HYPERLINK("http://evil.example")', xarf={},
                   body="...", status="queued", attempts=1, last_error="+cmd|' /C calc'!A0",
                   response="-2+3", language="@SUM(1)"),
        ]
    )  # fmt: skip
    session.add_all(
        [
            AuditLog(at=when, actor="arachne.notices", action="notice.queued",
                     detail={"reference": "ARN-0001", "attempts": 1, "error": "421 try later"}),
            AuditLog(at=when + timedelta(minutes=5), actor="arachne.notices", action="notice.sent",
                     detail={"reference": "ARN-0001", "attempts": 2,
                             "recipient": "abuse@bad.example"}),
            Incident(campaign_id=running.id, host="bad.example", host_id=bad.id, url_key="k1",
                     url=MATCHED, state="removed", first_noticed_at=when,
                     removed_at=when + timedelta(hours=2), removal_seconds=7200.0),
        ]
    )  # fmt: skip


async def get_ok(client: TestClient, path: str, token: str) -> str:
    resp = await client.get(path, headers=auth(token))
    text = await resp.text()
    assert resp.status == 200, (path, text)
    return text


def assert_csp_clean(html: str, path: str) -> None:
    """What a CSP without 'unsafe-inline' would block, and what would show the material."""
    for attrs, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I):
        assert "src=" in attrs and not body.strip(), (path, attrs, body[:80])
    assert not re.search(r"<style\b", html, re.I), path
    assert not re.search(r"\sstyle\s*=", html, re.I), path
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), path  # inline event handlers
    assert "<img" not in html.lower(), path
    for href in re.findall(r'href="([^"]*)"', html):
        # The console's own pages only (and the empty favicon that stops a 404).
        assert href.startswith(("/", "?", "#")) or href == "data:,", (path, href)
    assert 'href="http' not in html and PDQ_VALUE not in html, path


# -- pages -------------------------------------------------------------------------------


PAGES = (
    "/",
    "/campaigns/spring-sweep",
    "/campaigns/old-sweep",
    "/campaigns/spring-sweep?err_reason=timeout&err_limit=1",
    "/workers",
    "/notices",
    "/notices?status=queued&q=evil",
    "/lists",
)


@pytest.mark.asyncio
async def test_every_page_renders_without_inline_code_or_images(
    settings, store, tokens, redis
) -> None:
    import_list(store, "md5-list", LISTS / "plain.md5", actor="test")
    st.Stats(redis, "spring-sweep").inc_many(LIVE)
    async with client_for(settings) as client:
        for path in PAGES:
            html = await get_ok(client, path, tokens["viewer"])
            assert_csp_clean(html, path)
            assert '<script src="/static/app.js" defer></script>' in html
        resp = await client.get("/", headers=auth(tokens["viewer"]))
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        # The admins' page, the login form and an error page hold no inline code either.
        assert_csp_clean(await get_ok(client, "/access", tokens["admin"]), "/access")
        login = await client.get("/login")
        assert login.status == 200
        assert_csp_clean(await login.text(), "/login")
        missing = await client.get("/campaigns/nope", headers=auth(tokens["viewer"]))
        assert missing.status == 404
        assert_csp_clean(await missing.text(), "404")


@pytest.mark.asyncio
async def test_overview_page_and_json(settings, store, tokens, redis) -> None:
    st.Stats(redis, "spring-sweep").inc_many(LIVE)
    image_queue(redis, settings, "high").enqueue("arachne.queue.jobs.process_batch", "x", [])
    for _ in range(2):
        image_queue(redis, settings).enqueue("arachne.queue.jobs.process_batch", "x", [])
    image_queue(redis, settings).enqueue_in(timedelta(minutes=5), "arachne.queue.jobs.nothing")
    worker = Worker([image_queue(redis, settings)], connection=redis, name="w-one",
                    serializer=JSONSerializer)  # fmt: skip
    worker.register_birth()
    worker.set_state("busy")
    async with client_for(settings) as client:
        html = await get_ok(client, "/", tokens["viewer"])
        data = await (await client.get("/api/overview", headers=auth(tokens["viewer"]))).json()
    assert data["live"] is True and data["redis_banner"] is False
    assert data["queue_depth"] == 3
    assert [(q["priority"], q["depth"]) for q in data["queues"]] == [
        ("high", 1), ("normal", 2), ("low", 0)
    ]  # fmt: skip
    assert data["rq"] == {"workers": 1, "busy": 1, "running": 0, "failed": 0, "retrying": 1}
    assert data["today"]["matches"] == 1 and data["today"]["notices"] == 1
    assert data["errors_by_reason"] == {"timeout": 7}  # old-sweep has none; live replaces snapshot
    rows = {c["campaign"]: c for c in data["campaigns"]}
    assert rows["spring-sweep"]["pages"] == 1234 and rows["old-sweep"]["pages"] == 31
    assert set(rows["spring-sweep"]["rates"]) == {"pages_per_s", "images_per_s"}
    assert "runs" not in rows["spring-sweep"]  # the poll carries what the overview shows
    # the page: live bindings for the script, the banner present but hidden
    assert 'data-poll="/api/overview"' in html and 'data-bind="rq.workers"' in html
    assert re.search(r'<p class="banner" data-show="redis_banner" hidden>', html)
    assert '<tr data-key="spring-sweep">' in html and 'href="/campaigns/spring-sweep"' in html
    assert '<td>timeout</td><td class="n">7</td>' in html


def test_rates_over_the_last_thirty_seconds_of_fine_buckets(redis) -> None:
    now = 6_000_035.0  # 35 s into minute 100000, 1 s into tick 3000017
    tick = int(now // st.FINE_SECONDS)
    first = tick - series.RATE_WINDOW // st.FINE_SECONDS + 1  # 28 s before this tick
    fine = {
        f"{first}/{st.PAGES_CRAWLED}": 14, f"{tick}/{st.PAGES_CRAWLED}": 7,
        f"{tick - 3}/{st.IMAGES_FETCHED}": 29,
        f"{first - 1}/{st.PAGES_CRAWLED}": 500,  # just before the window: not counted
    }  # fmt: skip
    redis.hset(keys.campaign_timeline_fine("c", int(now // 3600)), mapping=fine)
    # Per-minute counts are for the charts, not the rates.
    redis.hset(keys.campaign_timeline("c"), f"100000/{st.PAGES_CRAWLED}", 999)
    elapsed = now - first * st.FINE_SECONDS
    assert elapsed == 29.0
    assert series.rates(redis, ["c", "none"], now) == {
        "c": {"pages_per_s": round(21 / 29, 2), "images_per_s": 1.0},
        "none": {"pages_per_s": 0.0, "images_per_s": 0.0},
    }
    # A window that straddles an hour reads both hours' hashes.
    edge = 6_001_201.0  # 1 s into hour 1667
    redis.hset(keys.campaign_timeline_fine("d", 1666), f"{3_000_590}/{st.PAGES_CRAWLED}", 10)
    redis.hset(keys.campaign_timeline_fine("d", 1667), f"{3_000_600}/{st.PAGES_CRAWLED}", 19)
    assert series.rates(redis, ["d"], edge)["d"]["pages_per_s"] == 1.0


@pytest.mark.asyncio
async def test_redis_down_banner_only_while_a_campaign_runs(tmp_path, store, tokens) -> None:
    settings = make_settings(tmp_path, closed_port_url())
    async with client_for(settings) as client:
        html = await get_ok(client, "/", tokens["viewer"])
        data = await (await client.get("/api/overview", headers=auth(tokens["viewer"]))).json()
        running = await get_ok(client, "/campaigns/spring-sweep", tokens["viewer"])
        done = await get_ok(client, "/campaigns/old-sweep", tokens["viewer"])
        workers = await get_ok(client, "/workers", tokens["viewer"])
    assert data["live"] is False and data["redis_banner"] is True and data["rq"] is None
    assert re.search(r'<p class="banner" data-show="redis_banner">Live counters unavailable', html)
    assert re.search(
        r'<p class="banner" data-show="redis_banner">Live counters unavailable', running
    )
    # Nothing runs on old-sweep: no alarm, just the note that figures are the snapshot.
    assert re.search(r'<p class="banner" data-show="redis_banner" hidden>', done)
    assert "Redis is not reachable" in done
    assert "Redis is unreachable" in workers
    with store.session() as s:
        for c in s.scalars(select(Campaign)):
            c.status = "done"
    async with client_for(settings) as client:
        data = await (await client.get("/api/overview", headers=auth(tokens["viewer"]))).json()
    assert data["redis_banner"] is False


@pytest.mark.asyncio
async def test_campaign_page_tables_and_operator_actions(settings, store, tokens, redis) -> None:
    st.Stats(redis, "spring-sweep").inc_many(LIVE)
    async with client_for(settings) as client:
        viewer = await get_ok(client, "/campaigns/spring-sweep", tokens["viewer"])
        operator = await get_ok(client, "/campaigns/spring-sweep", tokens["operator"])
        page2 = await get_ok(
            client, "/campaigns/spring-sweep?err_reason=timeout&err_limit=1&err_offset=1",
            tokens["viewer"],
        )  # fmt: skip
        stats = await (
            await client.get("/api/campaigns/spring-sweep/stats", headers=auth(tokens["viewer"]))
        ).json()
    for action in ("run", "pause", "resume", "cancel", "notices"):
        assert f'data-post="/api/campaigns/spring-sweep/{action}"' in operator
        assert "data-post=" not in viewer
    # charts load from the series endpoint with the vendored uPlot, no CDN
    assert 'data-charts="/api/campaigns/spring-sweep/series"' in viewer
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>' in viewer
    # top hosts: URLs, errors and matched URLs per host
    top = viewer[viewer.index("<h2>Top hosts</h2>") : viewer.index('<h2 id="errors">')]
    assert re.search(r"<td>clean.example</td><td class=\"n\">3</td><td class=\"n\">2</td>", top)
    assert re.search(r"<td>bad.example</td><td class=\"n\">1</td><td class=\"n\">0</td>\s*"
                     r"<td class=\"n\">1</td>", top)  # fmt: skip
    # error URLs, as text, filtered and paged
    errors = viewer[viewer.index('<h2 id="errors">') : viewer.index("<h2>Matched URLs")]
    assert "3 URLs" in errors and "http://slow.example/big.jpg" in errors
    assert "timeout after 10 s" in errors
    section = page2[page2.index('<h2 id="errors">') : page2.index("<h2>Matched URLs")]
    assert "2 URLs match the filter" in section and "showing 2–2" in section
    assert "slow.example" not in section.split("</form>")[1]
    assert 'href="?err_reason=timeout&amp;err_limit=1#errors"' in section  # back to page one
    # matched URL as escaped text, never a link; time to removal per provider and country
    assert "http://bad.example/a.jpg?x=&lt;b&gt;" in viewer
    removal = viewer[viewer.index("<h2>Time to removal</h2>") : viewer.index("<h2>Notices</h2>")]
    assert "<td>BadHost</td>" in removal and "<td>NL</td>" in removal and "2.0 h" in removal
    assert stats["status"] == "running" and stats["redis_banner"] is False
    assert stats["pages"] == 1234


@pytest.mark.asyncio
async def test_error_urls_json(settings, store, tokens, redis) -> None:
    async with client_for(settings) as client:
        path = "/api/campaigns/spring-sweep/errors"
        everything = await (await client.get(path, headers=auth(tokens["viewer"]))).json()
        page = await (
            await client.get(
                path + "?reason=timeout&limit=1&offset=1", headers=auth(tokens["viewer"])
            )
        ).json()
        by_text = await (
            await client.get(path + "?q=big&host=SLOW.example", headers=auth(tokens["viewer"]))
        ).json()
        bad = await client.get(path + "?limit=lots", headers=auth(tokens["viewer"]))
        missing = await client.get("/api/campaigns/nope/errors", headers=auth(tokens["viewer"]))
    assert everything["total"] == 3 and {r["reason"] for r in everything["rows"]} == {
        "timeout", "too_large"
    }  # fmt: skip
    assert page["total"] == 2 and len(page["rows"]) == 1 and page["offset"] == 1
    assert [r["url"] for r in by_text["rows"]] == ["http://slow.example/big.jpg"]
    assert bad.status == 400 and missing.status == 404


# -- series --------------------------------------------------------------------------------


def pages_of(data: dict[str, Any], mode: str = "per_bucket") -> list[int]:
    return next(s[mode] for s in data["series"] if s["key"] == "pages")


def test_series_a_twenty_second_demo_in_two_second_buckets() -> None:
    t0 = 1_000_000_020  # a minute boundary
    minutes = {t0 // 60 * 60: {st.PAGES_CRAWLED: 12, st.HASHED: 3}}
    fine = {t0: {st.PAGES_CRAWLED: 5}, t0 + 10: {st.PAGES_CRAWLED: 7, st.HASHED: 3}}
    data = series.build_series(minutes, fine)
    assert data["resolution"] == "2s" and data["bucket_seconds"] == 2
    assert data["t"] == list(range(t0 - 2, t0 + 12, 2))  # a leading zero bucket, then data
    assert pages_of(data) == [0, 5, 0, 0, 0, 0, 7]
    assert pages_of(data, "cumulative") == [0, 5, 5, 5, 5, 5, 12]
    # The same buckets summed to 10 s on request.
    ten = series.build_series(minutes, fine, "10s")
    assert ten["t"] == [t0 - 10, t0, t0 + 10] and pages_of(ten) == [0, 5, 7]
    hashed = next(s for s in data["series"] if s["key"] == "hashed")
    assert hashed["total"] == 3 and [s["key"] for s in data["series"]] == [
        "pages", "discovered", "fetched", "hashed", "matched"
    ]  # fmt: skip
    # Running: the chart reaches the present, a stall shows as zeros.
    live = series.build_series(minutes, fine, until=t0 + 16)
    assert live["t"][-1] == t0 + 16 and pages_of(live) == [0, 5, 0, 0, 0, 0, 7, 0, 0, 0]
    # Without fine buckets the minute is the finest: two points still draw a line.
    coarse = series.build_series(minutes, {})
    assert coarse["resolution"] == "1m" and pages_of(coarse) == [0, 12]
    assert series.build_series(minutes, {}, "2s")["resolution"] == "1m"
    # Past MAX_POINTS fine buckets (13 min), auto steps up to 10 s, then to the minute.
    long = {t0 + 2 * i: {st.PAGES_CRAWLED: 1} for i in range(series.MAX_POINTS + 2)}
    assert series.build_series({t0 // 60 * 60: {}}, long)["resolution"] == "10s"


def test_series_a_week_long_campaign_per_hour() -> None:
    start = 466_667 * 3600  # hour-aligned
    minutes = {start + m * 60: {st.PAGES_CRAWLED: 1} for m in range(7 * 24 * 60)}
    data = series.build_series(minutes, {})
    assert data["resolution"] == "1h" and data["bucket_seconds"] == 3600
    assert len(data["t"]) == 7 * 24 + 1 <= series.MAX_POINTS
    assert pages_of(data)[0] == 0 and set(pages_of(data)[1:]) == {60}
    assert pages_of(data, "cumulative")[-1] == 7 * 24 * 60
    day = {ts: v for ts, v in minutes.items() if ts < start + 86400}
    assert series.build_series(day, {})["resolution"] == "5m"
    two_hours = {ts: v for ts, v in minutes.items() if ts < start + 7200}
    assert series.build_series(two_hours, {})["resolution"] == "1m"
    forced = series.build_series(minutes, {}, "1m")
    assert forced["clipped"] and len(forced["t"]) == series.HARD_CAP
    assert series.build_series({}, {})["t"] == []
    with pytest.raises(series.BadResolution):
        series.build_series(minutes, {}, "7s")


@pytest.mark.asyncio
async def test_series_endpoint(settings, store, tokens, redis) -> None:
    # Fine buckets as Stats keeps them (keys.campaign_timeline_fine, one hash an hour).
    now = time.time()
    tick = int(now // st.FINE_SECONDS) - 2
    fine = lambda k: keys.campaign_timeline_fine("spring-sweep", k * st.FINE_SECONDS // 3600)  # noqa: E731
    for k, n in ((tick, 4), (tick + 1, 6)):
        redis.hset(fine(k), f"{k}/{st.PAGES_CRAWLED}", n)
    minute = tick * st.FINE_SECONDS // 60
    redis.hset(keys.campaign_timeline("spring-sweep"), f"{minute}/{st.PAGES_CRAWLED}", 10)
    redis.hset(keys.campaign_timeline("old-sweep"), f"{int(now // 60) - 3}/{st.HASHED}", 2)
    path = "/api/campaigns/{}/series"
    async with client_for(settings) as client:
        get = lambda p: client.get(p, headers=auth(tokens["viewer"]))  # noqa: E731
        demo = await (await get(path.format("spring-sweep"))).json()
        hourly = await (await get(path.format("spring-sweep") + "?resolution=1h")).json()
        done = await (await get(path.format("old-sweep"))).json()
        bad = await get(path.format("spring-sweep") + "?resolution=fortnightly")
        missing = await get(path.format("nope"))
        bad_body = await bad.json()
    assert demo["resolution"] == "2s" and demo["status"] == "running" and demo["live"] is True
    assert pages_of(demo)[:3] == [0, 4, 6] and demo["t"][-1] >= (tick + 1) * st.FINE_SECONDS
    assert hourly["bucket_seconds"] == 3600 and pages_of(hourly, "cumulative")[-1] == 10
    assert done["resolution"] == "1m" and [s["total"] for s in done["series"]][3] == 2
    assert bad.status == 400 and "resolution" in bad_body["detail"]
    assert missing.status == 404


# -- workers and requeue ---------------------------------------------------------------------


@pytest.fixture
def failed_job(settings: Settings, redis: Redis) -> str:
    queue = image_queue(redis, settings)
    job = queue.enqueue(failing_batch, "spring-sweep", [{"url": "http://x.example/1.jpg"}], 1,
                        description="spring-sweep: 1 images from 1 host(s)")  # fmt: skip
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    return job.id


@pytest.mark.asyncio
async def test_workers_page_and_requeue_of_a_failed_job(
    settings, store, tokens, redis, failed_job
) -> None:
    queue: Queue = image_queue(redis, settings)
    async with client_for(settings) as client:
        html = await get_ok(client, "/workers", tokens["operator"])
        viewer_html = await get_ok(client, "/workers", tokens["viewer"])
        data = await (await client.get("/api/workers", headers=auth(tokens["viewer"]))).json()
        url = f"/api/jobs/{failed_job}/requeue"
        refused = await client.post(url, headers=auth(tokens["viewer"]))
        unknown = await client.post("/api/jobs/abc123/requeue", headers=auth(tokens["operator"]))
        malformed = await client.post("/api/jobs/..%2F/requeue", headers=auth(tokens["operator"]))
        assert FailedJobRegistry(queue=queue).count == 1
        done = await client.post(url, headers=auth(tokens["operator"]))
        done_body = await done.json()
        again = await client.post(url, headers=auth(tokens["operator"]))
    (row,) = data["failed"]
    assert row["id"] == failed_job and row["campaign"] == "spring-sweep"
    assert row["error"] == "ValueError: boom: batch of spring-sweep could not be read"
    assert row["queue"] == "arachne-pages" and row["description"].startswith("spring-sweep:")
    assert f'data-post="/api/jobs/{failed_job}/requeue"' in html
    assert "data-post=" not in viewer_html and failed_job in viewer_html
    assert refused.status == 403 and unknown.status == 404 and malformed.status in (400, 404)
    assert done.status == 200 and done_body["requeued"] == failed_job
    assert again.status == 404
    assert FailedJobRegistry(queue=queue).count == 0 and queue.job_ids == [failed_job]
    with store.session() as s:
        actions = {(a.actor, a.action) for a in s.scalars(select(AuditLog))}
    assert ("token:operator-bot", "job.requeue") in actions


# -- notices and lists -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_notices_page_history_and_exports(settings, store, tokens, redis) -> None:
    async with client_for(settings) as client:
        html = await get_ok(client, "/notices", tokens["viewer"])
        filtered = await get_ok(client, "/notices?status=sent", tokens["viewer"])
        resp = await client.get("/notices.csv", headers=auth(tokens["viewer"]))
        body = await resp.text()
        data = await (await client.get("/api/notices", headers=auth(tokens["viewer"]))).json()
        paged = await (
            await client.get("/api/notices?limit=1&offset=1", headers=auth(tokens["viewer"]))
        ).json()
    assert "ARN-0001" in html and "ARN-0002" in html and "2 events" in html
    assert "421 try later" in html and "abuse@bad.example" in html
    assert "ARN-0001" in filtered and "ARN-0002" not in filtered
    assert 'href="/notices.csv?status=sent"' in filtered
    # CSV: a download, every notice, formulas defused
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert re.fullmatch(
        r'attachment; filename="arachne-notices-\d{8}-\d{6}\.csv"',
        resp.headers["Content-Disposition"],
    )
    rows = {r["reference"]: r for r in csv.DictReader(io.StringIO(body))}
    assert set(rows) == {"ARN-0001", "ARN-0002"}
    evil = rows["ARN-0002"]
    assert evil["recipient"] == '\'=HYPERLINK("http://evil.example")'
    assert evil["last_error"] == "'+cmd|' /C calc'!A0"
    assert evil["response"] == "'-2+3" and evil["language"] == "'@SUM(1)"
    assert rows["ARN-0001"]["recipient"] == "abuse@bad.example"
    assert rows["ARN-0001"]["campaign"] == "spring-sweep" and rows["ARN-0001"]["attempts"] == "2"
    # JSON: the same notices with their history
    by_ref = {n["reference"]: n for n in data["notices"]}
    assert data["total"] == 2 and by_ref["ARN-0002"]["recipient"].startswith("=HYPERLINK")
    assert [h["event"] for h in by_ref["ARN-0001"]["history"]] == ["queued", "sent"]
    assert by_ref["ARN-0001"]["history"][0]["error"] == "421 try later"
    assert [n["reference"] for n in paged["notices"]] == ["ARN-0001"] and paged["total"] == 2


def test_csv_cells_that_could_run_are_quoted() -> None:
    from arachne.dashboard.reads import csv_cell

    for value in ("=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"):
        assert csv_cell(value) == "'" + value
    assert csv_cell("abuse@x.example") == "abuse@x.example" and csv_cell(None) == ""
    assert csv_cell(-3) == -3  # numbers are numbers, not formulas


@pytest.mark.asyncio
async def test_lists_page_counts_never_hashes(settings, store, tokens, redis) -> None:
    import_list(store, "md5-list", LISTS / "plain.md5", actor="test")
    values = [v.strip().lower() for v in (LISTS / "plain.md5").read_text().split() if v.strip()]
    async with client_for(settings) as client:
        html = await get_ok(client, "/lists", tokens["viewer"])
    assert "<td>md5-list</td>" in html and "<td>sample-list</td>" in html
    assert f"md5 {len(values)}" in html and "Version history of md5-list" in html
    assert "(v1, test)" in html
    for value in [*values, PDQ_VALUE]:
        assert value not in html.lower()


# -- static ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_static_files_behind_login_except_the_login_pages_own(
    settings, store, tokens
) -> None:
    async with client_for(settings) as client:
        css = await client.get("/static/app.css")
        js_public = await client.get("/static/app.js")  # the login page's script
        private = "/static/vendor/uplot/uPlot.min.css"
        vendor = await client.get(private, allow_redirects=False)
        js_ok = await client.get("/static/app.js", headers=auth(tokens["viewer"]))
        assert js_ok.status == 200 and "textContent" in await js_ok.text()
        path = "/static/vendor/uplot/uPlot.iife.min.js"
        uplot = await client.get(path, headers=auth(tokens["viewer"]))
        assert uplot.status == 200 and "uPlot" in await uplot.text()
        escape = await client.get("/static/../views.py", headers=auth(tokens["viewer"]))
    assert css.status == 200 and "text/css" in css.headers["Content-Type"]
    assert js_public.status == 200
    assert vendor.status in (302, 303) and vendor.headers["Location"].startswith("/login")
    assert escape.status in (403, 404)


# -- the same store reads on PostgreSQL (JSON paths and counts differ by dialect) ---------------


def test_store_reads_on_postgresql(tmp_path) -> None:
    from arachne.dashboard import reads
    from tests.conftest import drop_postgres_database, fresh_postgres_database

    database = "arachne_dashboard_pages"
    store = Store.open(Settings(data_dir=tmp_path, database_url=fresh_postgres_database(database)))
    try:
        with store.session() as s:
            seed(s)
        import_list(store, "md5-list", LISTS / "plain.md5", actor="test")
        with store.session() as s:
            cid = s.scalar(select(Campaign.id).where(Campaign.name == "spring-sweep"))
            found = reads.notices(s, reads.NoticeFilter(text="ARN-0001"))
            errors = reads.error_urls(s, cid, reads.ErrorFilter(reason="timeout", limit=1))
            hosts = reads.top_hosts(s, cid)
            today = reads.today(s)
        lists = {row["name"]: row for row in reads.lists(store)}
    finally:
        store.dispose()
        drop_postgres_database(database)
    (notice,) = found["notices"]
    assert [h["event"] for h in notice["history"]] == ["queued", "sent"]
    assert notice["campaign"] == "spring-sweep"
    assert errors["total"] == 2 and len(errors["rows"]) == 1
    assert hosts[0] == {"host": "clean.example", "urls": 3, "errors": 2, "matched": 0}
    assert today["matches"] == 1 and today["notices"] == 1
    assert lists["md5-list"]["last_import"]["version"] == 1 and lists["md5-list"]["active_total"]
