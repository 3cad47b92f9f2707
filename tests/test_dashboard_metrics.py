"""/metrics: real SQLite store, real Redis (db 5), parsed with prometheus-client's parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.client import Pipeline
from rq import Worker
from rq.executions import Execution
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from arachne.dashboard import metrics
from arachne.dashboard.views import LiveSource
from arachne.matcher.hashing import hash_image_bytes
from arachne.notices.schedule import notices_queue
from arachne.queue import jobs, latency
from arachne.queue import stats as st
from arachne.queue.connection import image_queue, redis_from_url
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import (
    Campaign,
    HashEntry,
    HashList,
    Host,
    Image,
    Match,
    Notice,
    Sighting,
)
from arachne.store.users import add_user, create_token
from tests.console import closed_port_url, flushed_redis
from tests.imageserver import make_image, serve_slow

REDIS_URL = "redis://127.0.0.1:6379/5"
LIVE = {
    st.PAGES_CRAWLED: 1234,
    st.IMAGES_QUEUED: 540,
    st.IMAGES_FETCHED: 530,
    st.FETCH_RETRY: 6,
    "fetch/error/timeout": 7,
    "fetch/error/http_404": 2,
    "hash/error/decode": 3,
    "crawl/error/http_500": 5,
}
SNAPSHOT = {st.PAGES_CRAWLED: 31, st.IMAGES_FETCHED: 12, "fetch/error/too_large": 4}
# Families read from Redis: all gone when it is down.
LIVE_FAMILIES = {
    "arachne_queue_depth",
    "arachne_batches_failed",
    "arachne_batches_retrying",
    "arachne_batches_running",
    "arachne_workers",
    "arachne_pages_crawled",
    "arachne_images_queued",
    "arachne_images_fetched",
    "arachne_fetch_retries",
    "arachne_fetch_errors",
    "arachne_hash_errors",
    "arachne_page_errors",
    "arachne_fetch_duration_seconds",
    "arachne_hash_duration_seconds",
}
STORE_FAMILIES = {
    "arachne_images_hashed",
    "arachne_matches",
    "arachne_notices",
    "arachne_index_entries",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """({family: type}, {(sample name, labels): value})."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def value(samples: Samples, name: str, **pairs: str) -> float:
    return samples[(name, labels(**pairs))]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of one name, by its labels."""
    return {key: v for (sample, key), v in samples.items() if sample == name}


@pytest.fixture
def redis() -> Iterator[Redis]:
    yield from flushed_redis(REDIS_URL)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, redis_url=REDIS_URL, database_url=None, queue_name="arachne-test"
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    with store.session() as session:
        seed(session)
    yield store
    store.dispose()


def seed(session: Any) -> None:
    spring = Campaign(name="spring-sweep", seeds=["http://a.example/"], scope={}, stats=SNAPSHOT)
    old = Campaign(name="old-sweep", seeds=["http://b.example/"], scope={}, stats=SNAPSHOT)
    hash_list = HashList(name="sample-list", format="pdq")
    other_list = HashList(name="other-list", format="sha256")
    entries = [
        HashEntry(hash_list=hash_list, kind="md5", value="a" * 32),
        HashEntry(hash_list=hash_list, kind="pdq", value="b" * 64),
        HashEntry(hash_list=hash_list, kind="pdq", value="c" * 64),
        HashEntry(hash_list=hash_list, kind="pdq", value="d" * 64, deleted_at=datetime.now(UTC)),
        HashEntry(hash_list=other_list, kind="sha256", value="e" * 64),
    ]
    session.add_all([spring, old, *entries])
    session.flush()

    def sighting(n: int, image_id: int | None = None, error: str | None = None) -> Sighting:
        url = f"http://a.example/{n}.jpg"
        return Sighting(campaign_id=spring.id, url_key=str(n), image_url=url,
                        host="a.example", image_id=image_id, error=error)  # fmt: skip

    images = [Image(sha256=c * 64, md5=c * 32, sha1=c * 40, pdq=c * 64, size=1) for c in "1234"]
    session.add_all(images)
    session.flush()
    sightings = [
        sighting(1, images[0].id),
        sighting(2, images[1].id),
        sighting(3, images[2].id),
        sighting(4, images[3].id, error="low_quality"),  # fetched, not hashed
        sighting(5, None, error="timeout"),
    ]
    session.add_all(sightings)
    session.flush()

    def match(s: Sighting, kind: str, entry: HashEntry) -> Match:
        return Match(campaign_id=spring.id, sighting_id=s.id, entry_id=entry.id, kind=kind,
                     hash_kind=entry.kind, distance=0)  # fmt: skip

    # Sighting 1 matched both ways: one exact URL. Sighting 2 near twice: one near URL.
    session.add_all(
        [
            match(sightings[0], "exact", entries[0]),
            match(sightings[0], "near", entries[1]),
            match(sightings[1], "near", entries[1]),
            match(sightings[1], "near", entries[2]),
        ]
    )
    host = Host(hostname="a.example")
    session.add(host)
    session.flush()
    for i, status in enumerate(["sent", "sent", "pending", "failed"]):
        session.add(Notice(reference=f"ARN-{i}", campaign_id=spring.id, host_id=host.id, urls=[],
                           url_set_hash=f"h{i}", xarf={}, body="", status=status))  # fmt: skip


@pytest.fixture
def live(redis: Redis, settings: Settings) -> Iterator[None]:
    st.Stats(redis, "spring-sweep").inc_many(LIVE)  # old-sweep: no live hash (snapshot)
    normal = image_queue(redis, settings)
    high = image_queue(redis, settings, "high")
    for i in range(3):  # a string path: rq stores the name, nothing runs
        normal.enqueue("arachne.queue.jobs.process_batch", "spring-sweep", [], i)
    high.enqueue("arachne.queue.jobs.process_batch", "spring-sweep", [], 9)

    def job() -> Job:  # saved, in no queue's list
        made = Job.create("x.y", connection=redis, serializer=JSONSerializer, origin=normal.name)
        made.save()
        return made

    FailedJobRegistry(queue=normal).add(job(), ttl=600, exc_string="boom")
    for _ in range(2):
        FailedJobRegistry(queue=high).add(job(), ttl=600, exc_string="boom")
    pipe = redis.pipeline()
    Execution.create(job(), ttl=600, pipeline=pipe)  # what a worker does as it starts a job
    pipe.execute()
    normal.enqueue_in(timedelta(seconds=600), "x.y", 3)  # waits in the scheduled registry
    notices_queue(redis, settings).enqueue("x.y", 5)

    workers = [
        Worker([normal], name=f"w{i}", connection=redis, serializer=JSONSerializer)
        for i in range(3)
    ]
    for worker, state in zip(workers, ["busy", "busy", "idle"], strict=True):
        worker.register_birth()
        worker.set_state(state)
    latency.record(redis, {"fetch": [0.003, 0.2, 0.2, 40.0], "hash": [0.02]})
    yield
    for worker in workers:
        worker.register_death()


def scrape(store: Store, settings: Settings) -> tuple[dict[str, str], Samples, bytes]:
    source = LiveSource(settings)
    try:
        body = metrics.read_metrics(store, source)
    finally:
        source.close()
    types, samples = parse(body.decode())
    return types, samples, body


def test_every_family_from_seeded_data(store: Store, settings: Settings, live: None) -> None:
    types, s, _ = scrape(store, settings)

    assert value(s, "arachne_live_up") == 1
    assert types["arachne_live_up"] == "gauge"
    assert set(types) >= LIVE_FAMILIES | STORE_FAMILIES
    # queues: one series per queue, image priorities and the notices queue
    assert value(s, "arachne_queue_depth", queue="arachne-test") == 3
    assert value(s, "arachne_queue_depth", queue="arachne-test-high") == 1
    assert value(s, "arachne_queue_depth", queue="arachne-test-low") == 0
    assert value(s, "arachne_queue_depth", queue="arachne-test-notices") == 1
    assert value(s, "arachne_batches_failed", queue="arachne-test") == 1
    assert value(s, "arachne_batches_failed", queue="arachne-test-high") == 2
    assert value(s, "arachne_batches_retrying", queue="arachne-test") == 1
    assert value(s, "arachne_batches_retrying", queue="arachne-test-high") == 0
    assert value(s, "arachne_batches_running", queue="arachne-test") == 1
    assert value(s, "arachne_workers", state="busy") == 2
    assert value(s, "arachne_workers", state="idle") == 1

    # Redis counters per campaign; old-sweep has no live hash, so its snapshot stands in
    for name in ("pages_crawled", "images_queued", "images_fetched", "fetch_retries"):
        assert types[f"arachne_{name}"] == "counter"
    assert value(s, "arachne_pages_crawled_total", campaign="spring-sweep") == 1234
    assert value(s, "arachne_pages_crawled_total", campaign="old-sweep") == 31
    assert value(s, "arachne_images_queued_total", campaign="spring-sweep") == 540
    assert value(s, "arachne_images_fetched_total", campaign="spring-sweep") == 530
    assert value(s, "arachne_images_fetched_total", campaign="old-sweep") == 12
    assert value(s, "arachne_fetch_retries_total", campaign="spring-sweep") == 6
    assert series(s, "arachne_fetch_errors_total") == {
        labels(campaign="spring-sweep", reason="timeout"): 7,
        labels(campaign="spring-sweep", reason="http_404"): 2,
        labels(campaign="old-sweep", reason="too_large"): 4,
    }
    assert value(s, "arachne_hash_errors_total", campaign="spring-sweep", reason="decode") == 3
    assert value(s, "arachne_page_errors_total", campaign="spring-sweep", reason="http_500") == 5

    # store figures
    assert value(s, "arachne_images_hashed_total", campaign="spring-sweep") == 3
    assert value(s, "arachne_images_hashed_total", campaign="old-sweep") == 0
    assert value(s, "arachne_matches_total", campaign="spring-sweep", kind="exact") == 1
    assert value(s, "arachne_matches_total", campaign="spring-sweep", kind="near") == 1
    assert value(s, "arachne_matches_total", campaign="old-sweep", kind="near") == 0
    assert value(s, "arachne_notices_total", campaign="spring-sweep", status="sent") == 2
    assert value(s, "arachne_notices_total", campaign="spring-sweep", status="pending") == 1
    assert value(s, "arachne_notices_total", campaign="spring-sweep", status="failed") == 1
    index = {dict(k)["kind"]: v for k, v in series(s, "arachne_index_entries").items()}
    assert index == {"md5": 1, "sha1": 0, "sha256": 1, "pdq": 2}  # the retracted one is out


def test_label_values_are_escaped(store: Store, settings: Settings, redis: Redis) -> None:
    odd = 'a"b\\c\nd'
    with store.session() as session:
        session.add(Campaign(name=odd, seeds=[], scope={}))
    st.Stats(redis, odd).inc_many({st.PAGES_CRAWLED: 5, 'fetch/error/x"y': 1})
    _, s, body = scrape(store, settings)
    assert value(s, "arachne_pages_crawled_total", campaign=odd) == 5
    assert value(s, "arachne_fetch_errors_total", campaign=odd, reason='x"y') == 1
    assert b'campaign="a\\"b\\\\c\\nd"' in body


def test_latency_histograms_from_recorded_timings(
    store: Store, settings: Settings, live: None
) -> None:
    types, s, _ = scrape(store, settings)
    assert types["arachne_fetch_duration_seconds"] == "histogram"
    fetch = {
        dict(k)["le"]: v for k, v in series(s, "arachne_fetch_duration_seconds_bucket").items()
    }
    # recorded: 0.003, 0.2, 0.2, 40.0 (cumulative buckets, le = upper bound)
    assert fetch["0.005"] == 1
    assert fetch["0.1"] == 1
    assert fetch["0.25"] == 3
    assert fetch["30.0"] == 3
    assert fetch["+Inf"] == 4
    assert len(fetch) == len(latency.BUCKETS) + 1
    assert value(s, "arachne_fetch_duration_seconds_count") == 4
    assert value(s, "arachne_fetch_duration_seconds_sum") == pytest.approx(40.403)
    assert value(s, "arachne_hash_duration_seconds_bucket", le="0.01") == 0
    assert value(s, "arachne_hash_duration_seconds_bucket", le="0.025") == 1
    assert value(s, "arachne_hash_duration_seconds_count") == 1

    # a second batch adds to the first
    latency.record(Redis.from_url(REDIS_URL), {"hash": [0.02, 3.0]})
    _, s, _ = scrape(store, settings)
    assert value(s, "arachne_hash_duration_seconds_bucket", le="0.025") == 2
    assert value(s, "arachne_hash_duration_seconds_bucket", le="2.5") == 2
    assert value(s, "arachne_hash_duration_seconds_bucket", le="5.0") == 3
    assert value(s, "arachne_hash_duration_seconds_sum") == pytest.approx(3.04)


def test_empty_redis_reads_zero_not_absent(store: Store, settings: Settings, redis: Redis) -> None:
    _, s, _ = scrape(store, settings)
    assert value(s, "arachne_live_up") == 1
    assert value(s, "arachne_queue_depth", queue="arachne-test") == 0
    assert value(s, "arachne_workers", state="busy") == 0
    assert value(s, "arachne_fetch_duration_seconds_count") == 0
    assert value(s, "arachne_fetch_duration_seconds_bucket", le="+Inf") == 0


@pytest.mark.parametrize("where", ["closed port", "no embedded server"])
def test_redis_down_live_families_absent_store_families_present(
    store: Store, settings: Settings, where: str
) -> None:
    url = closed_port_url() if where == "closed port" else None
    down = settings.model_copy(update={"redis_url": url})
    types, s, _ = scrape(store, down)
    assert value(s, "arachne_live_up") == 0
    assert not LIVE_FAMILIES & set(types), "an unknown value must be absent, not 0"
    assert set(types) >= STORE_FAMILIES
    assert value(s, "arachne_images_hashed_total", campaign="spring-sweep") == 3
    assert value(s, "arachne_matches_total", campaign="spring-sweep", kind="exact") == 1
    assert value(s, "arachne_notices_total", campaign="spring-sweep", status="sent") == 2
    assert value(s, "arachne_index_entries", kind="pdq") == 2


def test_the_worker_records_fetch_and_hash_latencies(tmp_path: Path, redis: Redis) -> None:
    """A real batch through ``jobs.process_batch``: each fetch and each hash is timed."""
    batch_settings = Settings(
        data_dir=tmp_path / "worker", redis_url=REDIS_URL, database_url=None,
        fetch_timeout=5, allow_private_networks=True,
    )  # fmt: skip
    worker_store = Store.open(batch_settings)
    known = tmp_path / "known.txt"
    known.write_text(f"md5 {hash_image_bytes(make_image(1)).md5}\n")
    import_list(worker_store, "known", known)
    with worker_store.session() as session:
        create_campaign(session, "c1", ["http://127.0.0.1/"], {"allowed_hosts": ["127.0.0.1"]})
    jobs.set_context(jobs.WorkerContext(batch_settings, redis_from_url(REDIS_URL), worker_store))
    routes = {
        "/a.jpg": (200, "image/jpeg", make_image(1)),
        "/b.jpg": (200, "image/jpeg", make_image(2)),
        "/fake.jpg": (200, "image/jpeg", b"<html>not an image</html>"),
    }
    try:
        with serve_slow(routes, delay=0.3) as base:
            refs = [{"url": base + p, "page": None} for p in (*routes, "/gone.jpg")]
            jobs.process_batch("c1", refs)
    finally:
        jobs.set_context(None)
        worker_store.dispose()

    hist = latency.read(redis)
    fetch, hashed = hist["fetch"], hist["hash"]
    assert fetch.count == 4  # every URL asked for, errors (404, not an image) included
    assert dict(fetch.buckets)["0.25"] == 0, "each answer took the server's 0.3 s at least"
    assert fetch.sum >= 4 * 0.3
    assert hashed.count == 2  # only the two images had bytes to hash
    assert 0 < hashed.sum < 5


def test_recording_is_one_round_trip_and_cheap(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    timings = latency.BatchTimings(fetch=[0.01 * i for i in range(200)])
    for _ in range(50):
        with timings.hashing():
            pass
    trips: list[int] = []
    execute = Pipeline.execute

    def counted(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        trips.append(len(self))
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)
    started = time.perf_counter()
    timings.record(redis)
    elapsed = time.perf_counter() - started
    assert len(trips) == 1, "one pipelined round trip per batch"
    assert trips[0] <= 2 * (len(latency.BUCKETS) + 2)  # a field per bucket and the sums
    assert elapsed < 0.25  # about half a millisecond on a local Redis
    monkeypatch.undo()
    hist = latency.read(redis)
    assert hist["fetch"].count == 200 and hist["hash"].count == 50


def test_recording_never_fails_the_batch() -> None:
    dead = Redis.from_url(closed_port_url(), socket_connect_timeout=1)
    latency.BatchTimings(fetch=[0.1], hash=[0.01]).record(dead)  # logged, not raised


# -- the route ---------------------------------------------------------------------------


def create_app(settings: Settings) -> Any:
    from arachne.dashboard.app import create_app as create  # the whole console: load late

    return create(settings)


def token(store: Store, role: str = "viewer") -> str:
    """A viewer's API token, in a console with a user (else it only says how to set up)."""
    with store.session() as session:
        add_user(session, "admin", "admin", "correct horse battery", actor="test")
        _, secret = create_token(session, f"prom-{role}", role, actor="test")
    return secret


@pytest.mark.asyncio
async def test_route_serves_exposition_to_a_viewer_token(
    store: Store, settings: Settings, live: None
) -> None:
    secret = token(store)
    async with TestClient(TestServer(create_app(settings))) as client:
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        body = await resp.text()
        assert resp.status == 200, body
        assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
        _, s = parse(body)
        assert value(s, "arachne_live_up") == 1
        assert value(s, "arachne_pages_crawled_total", campaign="spring-sweep") == 1234

        resp = await client.get("/metrics")
        assert resp.status == 401
        resp = await client.get("/metrics", headers={"Authorization": "Bearer arachne_nope"})
        assert resp.status == 401


@pytest.mark.asyncio
async def test_route_open_when_the_operator_opts_out(store: Store, settings: Settings) -> None:
    open_settings = settings.model_copy(update={"dashboard_metrics_open": True})
    async with TestClient(TestServer(create_app(open_settings))) as client:
        resp = await client.get("/metrics")
        body = await resp.text()
    assert resp.status == 200, body
    types, _ = parse(body)
    assert set(types) >= STORE_FAMILIES
