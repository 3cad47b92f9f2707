"""process_batch: fetch → hash → match → record, idempotent under re-delivery."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arachne.matcher.hashing import hash_image_bytes
from arachne.queue import jobs
from arachne.queue import stats as st
from arachne.queue.connection import redis_from_url
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.listversions import rollback
from arachne.store.models import Image, Match, Sighting
from tests.imageserver import make_image, serve

KNOWN = make_image(1)
OTHER = make_image(2)
ROUTES = {
    "/known.jpg": (200, "image/jpeg", KNOWN),
    "/other.jpg": (200, "image/jpeg", OTHER),
    "/known-copy.png": (200, "image/png", make_image(1, fmt="PNG")),
    "/fake.jpg": (200, "image/jpeg", b"<html>not an image</html>"),
    "/truncated.jpg": (200, "image/jpeg", KNOWN[: len(KNOWN) // 2]),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def context(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[jobs.WorkerContext]:
    extra = {}
    if request.param == "postgresql":
        from tests.conftest import reset_postgres

        extra["database_url"] = reset_postgres()
    settings = Settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        fetch_timeout=5,
        allow_private_networks=True,  # the test server is on loopback
        **extra,
    )
    store = Store.open(settings)
    known = tmp_path / "known.txt"
    h = hash_image_bytes(KNOWN)
    known.write_text(f"md5 {h.md5}\npdq {h.pdq}\n")
    import_list(store, "known", known)
    with store.session() as session:
        create_campaign(session, "c1", ["http://127.0.0.1/"], {"allowed_hosts": ["127.0.0.1"]})
    ctx = jobs.WorkerContext(settings, redis_from_url(redis_url), store)
    jobs.set_context(ctx)
    yield ctx
    jobs.set_context(None)
    store.dispose()


def _counts(store: Store) -> tuple[int, int, int]:
    with store.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Sighting)) or 0,
            s.scalar(select(func.count()).select_from(Image)) or 0,
            s.scalar(select(func.count()).select_from(Match)) or 0,
        )


def test_batch_records_matches_and_errors_once(context: jobs.WorkerContext) -> None:
    with serve(ROUTES) as base:
        refs = [{"url": base + p, "page": base + "/page.html"} for p in (*ROUTES, "/gone.jpg")]
        first = jobs.process_batch("c1", refs)
        counts_after_first = _counts(context.store)
        second = jobs.process_batch("c1", refs)  # rq delivers at least once

    assert counts_after_first == _counts(context.store), "a re-run must add no rows"
    assert counts_after_first[0] == len(refs)
    assert first[st.IMAGES_DONE] == len(refs)
    assert second == {}, "a re-delivered batch must not count twice"
    live = st.Stats(context.redis, "c1").get_all()
    assert live[st.IMAGES_DONE] == len(refs)

    with context.store.session() as s:
        rows = {x.image_url.rsplit("/", 1)[1]: x for x in s.scalars(select(Sighting))}
        known_sha = rows["known.jpg"].image.sha256
        kinds: dict[str, set[str]] = {}
        for m in s.scalars(select(Match)):
            kinds.setdefault(m.sighting.image_url.rsplit("/", 1)[1], set()).add(m.kind)
    assert rows["fake.jpg"].error == "not_an_image"
    assert rows["truncated.jpg"].error == "truncated"
    assert rows["gone.jpg"].error == "http_404" and rows["gone.jpg"].http_status == 404
    assert rows["known.jpg"].error is None and rows["known.jpg"].server_ip == "127.0.0.1"
    assert known_sha == hashlib.sha256(KNOWN).hexdigest()
    # Exact bytes match by md5 (and PDQ); the PNG re-encode only by PDQ; the other not at all.
    assert kinds["known.jpg"] == {"exact", "near"}
    assert kinds["known-copy.png"] == {"near"}
    assert "other.jpg" not in kinds


def test_list_import_is_picked_up_without_restart(context: jobs.WorkerContext) -> None:
    with serve(ROUTES) as base:
        jobs.process_batch("c1", [{"url": base + "/other.jpg", "page": None}])
        assert _counts(context.store)[2] == 0
        extra = context.settings.data_dir / "more.txt"
        extra.write_text(f"sha256 {hashlib.sha256(OTHER).hexdigest()}\n")
        import_list(context.store, "more", extra)
        with context.store.session() as s:
            create_campaign(s, "c2", ["http://127.0.0.1/"], {})
        jobs.process_batch("c2", [{"url": base + "/other.jpg", "page": None}])
    assert _counts(context.store)[2] == 1


def test_transient_failures_are_refetched_later_not_recorded(
    context: jobs.WorkerContext,
) -> None:
    from rq.registry import ScheduledJobRegistry

    from arachne.queue.connection import image_queue
    from tests.imageserver import serve_slow

    with serve_slow(ROUTES, failures={"/known.jpg": 1, "/other.jpg": 5}) as base:
        refs = [{"url": base + p, "page": None} for p in ("/known.jpg", "/other.jpg", "/fake.jpg")]
        counts = jobs.process_batch("c1", refs)
        # Only the permanent outcome is recorded; the two 503s wait for a later try.
        assert _counts(context.store)[0] == 1 and counts[st.FETCH_RETRY] == 2
        queue = image_queue(context.redis, context.settings)
        scheduled = ScheduledJobRegistry(queue=queue)
        (job_id,) = scheduled.get_job_ids()
        retry = queue.fetch_job(job_id)
        assert retry is not None and {r["attempt"] for r in retry.args[1]} == {1}
        jobs.process_batch(*retry.args)  # known.jpg works now; other.jpg still fails
        with context.store.session() as s:
            rows = {x.image_url.rsplit("/", 1)[1]: x.error for x in s.scalars(select(Sighting))}
        assert rows == {"fake.jpg": "not_an_image", "known.jpg": None}
        (last_id,) = [j for j in scheduled.get_job_ids() if j != job_id]
        last = queue.fetch_job(last_id)
        assert last is not None
        jobs.process_batch(*last.args)  # the last allowed try: the error is recorded
    with context.store.session() as s:
        rows = {x.image_url.rsplit("/", 1)[1]: x.error for x in s.scalars(select(Sighting))}
    assert rows["other.jpg"] == "http_503"


def test_a_refetch_waits_for_the_servers_retry_after(context: jobs.WorkerContext) -> None:
    import time

    from rq.registry import ScheduledJobRegistry

    from arachne.queue.connection import image_queue
    from tests.imageserver import serve_slow

    routes = {
        "/busy.jpg": (429, "text/plain", b"slow down"),
        "/hostile.jpg": (503, "text/plain", b"later"),
    }
    waits = {"/busy.jpg": {"Retry-After": "600"}, "/hostile.jpg": {"Retry-After": "99999999"}}
    queue = image_queue(context.redis, context.settings)
    scheduled = ScheduledJobRegistry(queue=queue)
    from arachne.queue import keys

    def refetch_of(path: str) -> tuple[float, list[dict[str, object]]]:
        before = set(scheduled.get_job_ids())
        started = time.time()
        jobs.process_batch("c1", [{"url": base + path, "page": None}])
        (job_id,) = set(scheduled.get_job_ids()) - before
        job = queue.fetch_job(job_id)
        assert job is not None
        return scheduled.get_scheduled_time(job_id).timestamp() - started, job.args[1]

    with serve_slow(routes, headers=waits) as base:
        # Not the configured 30 s: the server's word.
        delay, refs = refetch_of("/busy.jpg")
        assert 595 <= delay <= 605 and refs[0]["attempt"] == 1
        # The whole host now waits, for every worker: its next image is not even asked
        # for, and being put off is not an attempt.
        delay, refs = refetch_of("/hostile.jpg")
        assert 590 <= delay <= 605 and refs[0]["attempt"] == 0
        # A hostile Retry-After is capped at an hour.
        context.redis.delete(keys.host_state("127.0.0.1"))
        delay, refs = refetch_of("/hostile.jpg")
        assert jobs.RETRY_AFTER_CAP - 5 <= delay <= jobs.RETRY_AFTER_CAP + 5, delay


def test_a_large_list_uses_the_multi_index_and_still_matches(
    context: jobs.WorkerContext,
) -> None:
    import numpy as np

    from arachne.matcher.mih import LINEAR_BELOW, MIHPDQIndex

    rng = np.random.default_rng(7)
    big = context.settings.data_dir / "big.txt"
    noise = rng.integers(0, 256, (LINEAR_BELOW + 1000, 32), dtype=np.uint8)
    big.write_text("".join(f"pdq {row.tobytes().hex()}\n" for row in noise))
    import_list(context.store, "big", big)
    with serve(ROUTES) as base:
        jobs.process_batch("c1", [{"url": base + "/known-copy.png", "page": None}])
    assert context.matcher is not None
    assert isinstance(context.matcher.pdq, MIHPDQIndex)
    with context.store.session() as s:
        kinds = [m.kind for m in s.scalars(select(Match))]
    assert kinds == ["near"], "the re-encoded copy must still match through the multi-index"


def test_list_updates_change_the_loaded_index_in_place(context: jobs.WorkerContext) -> None:
    known, other = hash_image_bytes(KNOWN), hash_image_bytes(OTHER)
    path = context.settings.data_dir / "known.txt"
    context.refresh_if_stale()
    assert context.reloads == 1
    matcher = context.matcher
    assert matcher is not None and matcher.exact.lookup("md5", known.md5)

    # v2 retracts the md5 and adds a sha256: applied in place, no rebuild.
    path.write_text(f"pdq {known.pdq}\nsha256 {other.sha256}\n")
    import_list(context.store, "known", path, force=True)
    context.refresh_if_stale()
    assert context.reloads == 1 and context.matcher is matcher
    assert not matcher.exact.lookup("md5", known.md5)
    assert matcher.exact.lookup("sha256", other.sha256)
    assert [d.kind for d in matcher.match(known)] == ["near"]

    # v3 restores the md5 (same entry row) and retracts the PDQ.
    path.write_text(f"md5 {known.md5}\nsha256 {other.sha256}\n")
    import_list(context.store, "known", path, force=True)
    context.refresh_if_stale()
    assert context.reloads == 1
    assert [d.kind for d in matcher.match(known)] == ["exact"]

    # Rolling back to v1 (md5 and PDQ, no sha256) is applied in place too.
    rollback(context.store, "known", 1)
    context.refresh_if_stale()
    assert context.reloads == 1 and context.matcher is matcher
    assert sorted(d.kind for d in matcher.match(known)) == ["exact", "near"]
    assert not matcher.exact.lookup("sha256", other.sha256)

    # A new list threshold changes every entry's rule: that one is a full reload.
    import_list(context.store, "known", path, threshold=10, force=True)
    context.refresh_if_stale()
    assert context.reloads == 2

    # Whatever path got it there, the index equals a fresh build from the store.
    fresh = jobs.WorkerContext(context.settings, context.redis, context.store)
    fresh.refresh_if_stale()
    for hashes in (known, other):
        assert context.matcher.match(hashes) == fresh.matcher.match(hashes)  # type: ignore[union-attr]


def test_a_paused_runs_batch_waits_and_a_cancelled_ones_is_dropped(
    context: jobs.WorkerContext,
) -> None:
    from rq.registry import ScheduledJobRegistry

    from arachne.queue import keys
    from arachne.queue.connection import image_queue

    scheduled = ScheduledJobRegistry(queue=image_queue(context.redis, context.settings))
    with serve(ROUTES) as base:
        refs = [{"url": base + "/known.jpg", "page": None}]
        context.redis.set(keys.run_control("c1", 2), "paused")
        assert jobs.process_batch("c1", refs, 2) == {"paused": 1}
        (later,) = scheduled.get_job_ids()
        job = image_queue(context.redis, context.settings).fetch_job(later)
        assert job is not None and job.args == ["c1", refs, 2], "the same batch, later"
        assert _counts(context.store)[0] == 0, "nothing fetched while paused"
        context.redis.set(keys.run_control("c1", 2), "cancelled")
        assert jobs.process_batch("c1", refs, 2) == {st.IMAGES_CANCELLED: 1}
        assert _counts(context.store)[0] == 0
        assert st.Stats(context.redis, "c1").get_run(2)[st.IMAGES_CANCELLED] == 1
        # Another run of the campaign is not affected.
        assert jobs.process_batch("c1", refs, 3)[st.IMAGES_DONE] == 1


def test_inline_images_match_from_their_hashes_alone(context: jobs.WorkerContext) -> None:
    from arachne.matcher.hashing import hashes_to_json

    h = hash_image_bytes(KNOWN, reference=False)
    url = f"data:image/jpeg;sha256,{h.sha256}"
    items = [{"url": url, "page": "http://site.test/gallery.html", "hashes": hashes_to_json(h)}]
    first = jobs.process_inline("c1", items, 1)
    assert first[st.IMAGES_MATCHED] == 1 and first[st.MATCH_EXACT] == 1
    assert jobs.process_inline("c1", items, 1) == {}, "a re-delivery records nothing twice"
    with context.store.session() as s:
        (sighting,) = s.scalars(select(Sighting))
        assert (sighting.image_url, sighting.host) == (url, "site.test")
        assert sighting.image is not None and sighting.image.sha256 == h.sha256
        assert {m.kind for m in s.scalars(select(Match))} == {"exact", "near"}
