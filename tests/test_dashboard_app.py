"""Dashboard: real SQLite store, real Redis (db 11), the app served by aiohttp's TestServer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis import Redis

from arachne.dashboard import app as app_module
from arachne.dashboard.app import create_app, run_dashboard
from arachne.queue import stats as st
from arachne.queue.connection import image_queue
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import (
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
from arachne.store.users import create_token
from tests.console import closed_port_url, flushed_redis

REDIS_URL = "redis://127.0.0.1:6379/11"
PDQ_VALUE = "f" * 64  # a list entry's hash: must never reach the dashboard
LIVE = {
    st.PAGES_CRAWLED: 1234,
    st.IMAGES_FOUND: 560,
    st.IMAGES_QUEUED: 540,
    st.IMAGES_FETCHED: 530,
    st.HASHED: 520,
    "fetch/error/timeout": 7,
    "hash/error/decode": 3,
}
SNAPSHOT = {
    st.PAGES_CRAWLED: 999,
    st.IMAGES_FOUND: 88,
    st.IMAGES_QUEUED: 77,
    st.IMAGES_FETCHED: 66,
    "fetch/error/too_large": 4,
}


def make_settings(data_dir: Path, redis_url: str | None) -> Settings:
    return Settings(
        data_dir=data_dir, redis_url=redis_url, database_url=None, queue_name="arachne-test"
    )


@pytest.fixture
def redis() -> Iterator[Redis]:
    yield from flushed_redis(REDIS_URL)


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
def live(redis: Redis, settings: Settings) -> None:
    st.Stats(redis, "spring-sweep").inc_many(LIVE)
    queue = image_queue(redis, settings)
    for i in range(3):  # a string path: rq stores the name, nothing runs
        queue.enqueue("arachne.queue.jobs.process_batch", i)


def seed(session: Any) -> None:
    when = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    running = Campaign(
        name="spring-sweep",
        seeds=["http://bad.example/"],
        scope={},
        status="running",
        created_at=when,
        started_at=when,
        stats=SNAPSHOT,
    )
    finished = Campaign(
        name="old-sweep", seeds=["http://old.example/"], scope={}, status="finished",
        stats={st.PAGES_CRAWLED: 31}, created_at=datetime(2026, 10, 1, tzinfo=UTC),
    )  # fmt: skip
    session.add_all([running, finished])
    images = [Image(sha256=c * 64, md5=c * 32, sha1=c * 40, pdq=c * 64, size=100) for c in "abcd"]
    hash_list = HashList(name="sample-list", format="pdq")
    md5_entry = HashEntry(hash_list=hash_list, kind="md5", value="a" * 32, category="A1")
    pdq_entry = HashEntry(hash_list=hash_list, kind="pdq", value=PDQ_VALUE, category="B2")
    session.add_all([*images, md5_entry, pdq_entry])
    session.flush()

    def sighting(url: str, host: str, image: Image | None, error: str | None = None) -> Sighting:
        return Sighting(
            campaign_id=running.id, url_key=url[-40:], image_url=url,
            page_url=f"http://{host}/gallery", host=host, image=image, error=error,
        )  # fmt: skip

    s1 = sighting("http://bad.example/a.jpg?x=<b>", "bad.example", images[0])
    s2 = sighting("http://bad.example/b.jpg", "bad.example", images[1])
    s3 = sighting("http://cdn.other.example/c.png", "cdn.other.example", images[2])
    s4 = sighting("http://clean.example/ok.jpg", "clean.example", images[3])
    s5 = sighting("http://clean.example/slow.jpg", "clean.example", None, error="timeout")
    session.add_all([s1, s2, s3, s4, s5])
    session.flush()
    session.add_all(
        [
            Match(campaign_id=running.id, sighting_id=s1.id, entry_id=md5_entry.id,
                  kind="exact", hash_kind="md5", distance=0),
            Match(campaign_id=running.id, sighting_id=s2.id, entry_id=pdq_entry.id,
                  kind="near", hash_kind="pdq", distance=12, variant="rot90"),
            Match(campaign_id=running.id, sighting_id=s3.id, entry_id=pdq_entry.id,
                  kind="near", hash_kind="pdq", distance=20),
        ]
    )  # fmt: skip
    bad = Host(hostname="bad.example", abuse_email="abuse@bad.example")
    cdn = Host(hostname="cdn.other.example", is_cdn=True)
    session.add_all([bad, cdn])
    session.flush()
    session.add_all(
        [
            Notice(reference="ARN-0001", campaign_id=running.id, host_id=bad.id,
                   urls=[s1.image_url, s2.image_url], url_set_hash="h1",
                   recipient="abuse@bad.example", xarf={}, body="...", status="sent",
                   sent_at=datetime(2026, 11, 20, 10, 5, tzinfo=UTC)),
            Notice(reference="ARN-0002", campaign_id=running.id, host_id=cdn.id,
                   urls=[s3.image_url], url_set_hash="h2", xarf={}, body="...",
                   status="pending"),
        ]
    )  # fmt: skip
    noticed = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    session.add_all(
        [
            Incident(campaign_id=running.id, host="bad.example", host_id=bad.id,
                     url_key="k1", url=s1.image_url, entry_ids=[md5_entry.id], state="removed",
                     first_noticed_at=noticed, removed_at=noticed + timedelta(hours=3),
                     removal_seconds=3 * 3600.0, notices_sent=1, failures=0, reappeared=0),
            Incident(campaign_id=running.id, host="bad.example", host_id=bad.id,
                     url_key="k2", url=s2.image_url, entry_ids=[pdq_entry.id], state="noticed",
                     first_noticed_at=noticed, notices_sent=1, failures=0, reappeared=0),
        ]
    )  # fmt: skip


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[TestClient]:
    """A client that reads as a viewer (its Bearer token on every request)."""
    store = Store.open(settings)
    try:
        with store.session() as session:
            _, secret = create_token(session, "dashboard-test", "viewer", actor="test")
    finally:
        store.dispose()
    headers = {"Authorization": f"Bearer {secret}"}
    async with TestClient(TestServer(create_app(settings)), headers=headers) as client:
        yield client


async def get_text(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text
    return text


def card(html: str, value: str, label: str) -> bool:
    """A figure card showing exactly `value` above a label starting with `label`."""
    pattern = rf'<div class="v">{re.escape(value)}</div>\s*<div class="k">{re.escape(label)}'
    return re.search(pattern, html) is not None


@pytest.mark.asyncio
async def test_index_lists_campaigns_with_live_figures(settings, store, live) -> None:
    async with client_for(settings) as client:
        html = await get_text(client, "/")
    assert card(html, "3", "jobs in the image queue")
    assert card(html, "2", "campaigns")
    assert 'href="/campaigns/spring-sweep"' in html
    assert 'href="/campaigns/old-sweep"' in html
    row = html[html.index("spring-sweep") : html.index("old-sweep")]
    assert [*re.findall(r'<td class="n">([\d,]+)</td>', row)] == ["1,234", "560", "4", "3", "2"]
    assert '<td class="n">31</td>' in html  # old-sweep: no live hash, snapshot stands in
    assert '<p class="banner" data-show="redis_banner" hidden>' in html  # Redis is up


@pytest.mark.asyncio
async def test_campaign_page_shows_figures(settings, store, live) -> None:
    async with client_for(settings) as client:
        html = await get_text(client, "/campaigns/spring-sweep")
    for value, label in [
        ("1,234", "pages crawled"),
        ("560", "images found"),
        ("540", "images queued"),
        ("530", "images fetched"),
        ("4", "images hashed"),
        ("3", "matched URLs (1 exact, 2 near)"),
        ("2", "hosts with matches"),
        ("2", "notices"),
        ("3", "jobs in the image queue"),
    ]:
        assert card(html, value, label), (value, label)
    # Running: the page polls its stats and series (static/app.js), no reload.
    assert 'data-poll="/api/campaigns/spring-sweep/stats"' in html
    assert 'data-charts="/api/campaigns/spring-sweep/series"' in html
    assert '<p class="banner" data-show="redis_banner" hidden>' in html
    # errors: live counters by reason next to sightings recorded with that error
    assert re.search(r"<td>timeout</td><td class=\"n\">7</td>\s*<td class=\"n\">1</td>", html)
    assert re.search(r"<td>decode</td><td class=\"n\">3</td>", html)
    # matches grouped per host, URLs escaped text, never links or images
    assert "bad.example — 2 URLs" in html and "cdn.other.example — 1 URL<" in html
    assert html.index("bad.example — 2") < html.index("http://bad.example/b.jpg")
    assert html.index("http://bad.example/b.jpg") < html.index("cdn.other.example — 1")
    assert "http://bad.example/a.jpg?x=&lt;b&gt;" in html and "?x=<b>" not in html
    assert "pdq (rot90)" in html and '<td class="n">12</td>' in html
    assert "sample-list" in html and "B2" in html
    assert "<img" not in html and 'href="http://bad' not in html and PDQ_VALUE not in html
    # notices
    assert "ARN-0001" in html and "ARN-0002" in html
    assert "abuse@bad.example" in html and "2026-11-20 10:05 UTC" in html
    assert '<span class="badge sent">sent</span></td><td class="n">1</td>' in html
    # time to removal: one of the two noticed URLs gone 3 h after its notice
    row = html[html.index("<h2>Time to removal</h2>") : html.index("<h2>Notices</h2>")]
    cells = re.findall(r'<td class="n">([^<]+)</td>', row)
    assert cells[:7] == ["2", "2", "1", "1", "3.0 h", "3.0 h", "50.0 %"]


@pytest.mark.asyncio
async def test_finished_campaign_page(settings, store, live) -> None:
    async with client_for(settings) as client:
        html = await get_text(client, "/campaigns/old-sweep")
    assert card(html, "31", "pages crawled")
    assert "No matches." in html and "No notices yet." in html


@pytest.mark.asyncio
async def test_api_stats(settings, store, live) -> None:
    async with client_for(settings) as client:
        resp = await client.get("/api/campaigns/spring-sweep/stats")
        data = await resp.json()
    assert resp.status == 200
    assert data["campaign"] == "spring-sweep" and data["status"] == "running"
    assert data["pages"] == 1234 and data["images_fetched"] == 530
    assert data["images_hashed"] == 4 and data["images_recorded"] == 5
    assert data["matches"] == {"urls": 3, "exact": 1, "near": 2}
    assert data["hosts_with_matches"] == 2
    assert data["notices"] == {"total": 2, "sent": 1, "pending": 1}
    assert data["queue_depth"] == 3 and data["live_available"] is True
    assert data["live"] == LIVE
    assert data["errors_by_reason"] == {"timeout": 7, "decode": 3}


@pytest.mark.asyncio
async def test_api_campaigns_matches_notices(settings, store, live) -> None:
    async with client_for(settings) as client:
        listing = await (await client.get("/api/campaigns")).json()
        matches = await (await client.get("/api/campaigns/spring-sweep/matches")).json()
        page = await (
            await client.get("/api/campaigns/spring-sweep/matches?limit=1&offset=1")
        ).json()
        notices = await (await client.get("/api/campaigns/spring-sweep/notices")).json()
        removal = await (await client.get("/api/campaigns/spring-sweep/removal")).json()
        bad = await client.get("/api/campaigns/spring-sweep/matches?limit=x")
        bad_body = await bad.json()
    assert listing["queue_depth"] == 3 and listing["live"] is True
    assert [c["campaign"] for c in listing["campaigns"]] == ["spring-sweep", "old-sweep"]
    assert {c["campaign"]: c["pages"] for c in listing["campaigns"]} == {
        "spring-sweep": 1234,
        "old-sweep": 31,
    }
    assert matches["total"] == 3
    assert [(m["host"], m["kind"], m["distance"], m["list"]) for m in matches["matches"]] == [
        ("bad.example", "exact", 0, "sample-list"),
        ("bad.example", "near", 12, "sample-list"),
        ("cdn.other.example", "near", 20, "sample-list"),
    ]
    assert matches["matches"][0]["url"] == "http://bad.example/a.jpg?x=<b>"
    assert PDQ_VALUE not in str(matches)
    assert [m["distance"] for m in page["matches"]] == [12] and page["total"] == 3
    by_ref = {n["reference"]: n for n in notices["notices"]}
    assert by_ref["ARN-0001"]["host"] == "bad.example"
    assert by_ref["ARN-0001"]["recipient"] == "abuse@bad.example"
    assert by_ref["ARN-0001"]["sent_at"].startswith("2026-11-20T10:05")
    assert by_ref["ARN-0002"]["status"] == "pending" and by_ref["ARN-0002"]["urls"] == 1
    assert "last_error" in by_ref["ARN-0002"] and by_ref["ARN-0001"]["kind"] == "notice"
    assert (removal["incidents"], removal["removed"], removal["median_seconds"]) == (2, 1, 10800.0)
    assert removal["by_provider"]["(unknown: bad.example)"]["pct_within_24h"] == 50.0
    assert bad.status == 400 and bad_body == {
        "error": "Bad Request",
        "detail": "limit must be an integer",
    }


@pytest.mark.asyncio
async def test_unknown_campaign_is_404(settings, store, live) -> None:
    async with client_for(settings) as client:
        html = await get_text(client, "/campaigns/nope", status=404)
        assert "no campaign named &#39;nope&#39;" in html and "<h1>404</h1>" in html
        for path in ("stats", "matches", "notices"):
            resp = await client.get(f"/api/campaigns/nope/{path}")
            assert resp.status == 404
            assert "nope" in (await resp.json())["detail"]
        missing = await client.get("/api/nothing-here")
        assert missing.status == 404 and (await missing.json()) == {
            "error": "Not Found",
            "detail": "Not Found",
        }
        assert "<h1>404</h1>" in await get_text(client, "/no/such/page", status=404)


@pytest.mark.asyncio
async def test_redis_down_shows_store_snapshot(tmp_path, store) -> None:
    settings = make_settings(tmp_path, closed_port_url())
    async with client_for(settings) as client:
        html = await get_text(client, "/campaigns/spring-sweep")
        index = await get_text(client, "/")
        data = await (await client.get("/api/campaigns/spring-sweep/stats")).json()
        metrics = await get_text(client, "/metrics")
    assert "Live counters unavailable" in html and "Live counters unavailable" in index
    assert card(html, "999", "pages crawled") and card(html, "66", "images fetched")
    assert card(html, "3", "matched URLs") and card(html, "–", "jobs in the image queue")
    assert "No throughput timeline (live counters unavailable)" in html
    assert card(index, "–", "jobs in the image queue")
    assert data["live_available"] is False and data["live"] is None
    assert data["queue_depth"] is None and data["pages"] == 999
    assert data["errors_by_reason"] == {"too_large": 4}
    # Redis-sourced families are absent (unknown), not 0; store-sourced ones stay.
    assert "arachne_live_up 0.0" in metrics and "arachne_queue_depth" not in metrics
    assert 'arachne_images_hashed_total{campaign="spring-sweep"}' in metrics


@pytest.mark.asyncio
async def test_no_embedded_valkey_running_shows_snapshot(tmp_path, store) -> None:
    # No REDIS_URL and no embedded server for this data dir: live counters are unavailable.
    async with client_for(make_settings(tmp_path, None)) as client:
        html = await get_text(client, "/campaigns/spring-sweep")
    assert "Live counters unavailable" in html and card(html, "999", "pages crawled")


def test_run_dashboard_serves_on_configured_address(tmp_path, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run_app(app: Any, host: str, port: int, **_: Any) -> None:
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(app_module.web, "run_app", fake_run_app)
    settings = make_settings(tmp_path, REDIS_URL).model_copy(
        update={"dashboard_host": "0.0.0.0", "dashboard_port": 9123}
    )
    run_dashboard(settings)
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 9123)
    assert {r.name for r in seen["app"].router.resources()} >= {"index", "campaign", "metrics"}
