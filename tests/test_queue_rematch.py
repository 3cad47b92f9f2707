"""Retroactive matching (issue 9 §2): a list imported after the crawl finds what the store
already holds, exactly as the live matcher would have, without fetching anything again."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from arachne.cli import cli
from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.matcher.match import Matcher
from arachne.queue import jobs
from arachne.queue.connection import image_queue, redis_from_url
from arachne.queue.rematch import Selection, enqueue_rematch, progress, rematch_now
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import active_entries, import_list
from arachne.store.models import Campaign, Match, Sighting
from arachne.store.records import ImageOutcome, record_outcomes
from tests.imageserver import make_image


def rotated(data: bytes) -> bytes:
    out = io.BytesIO()
    PILImage.open(io.BytesIO(data)).transpose(PILImage.Transpose.ROTATE_90).save(out, "PNG")
    return out.getvalue()


PICTURES = [make_image(seed, size=(240, 180)) for seed in range(1, 7)]


def hashes_of(data: bytes) -> ImageHashes:
    return hash_image_bytes(data, reference=False)  # the workers' path


@pytest.fixture(params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Store]:
    """A store that crawled PICTURES (two URLs for the first) before any list existed."""
    extra = {}
    if request.param == "postgresql":
        from tests.conftest import reset_postgres

        extra["database_url"] = reset_postgres()
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, **extra)
    store = Store.open(settings)
    with store.session() as session:
        create_campaign(session, "c1", ["http://a.example/"], {})
        create_campaign(session, "c2", ["http://b.example/"], {})
        ids = dict(session.execute(select(Campaign.name, Campaign.id)).all())
    for campaign, urls in (("c1", range(6)), ("c2", [0])):
        outcomes = [
            ImageOutcome(
                f"http://{campaign}.example/img/{i}.jpg",
                f"http://{campaign}.example/",
                f"{campaign}.example",
                http_status=200,
                hashes=hashes_of(PICTURES[i]),
            )
            for i in urls
        ]
        with store.session() as session:
            record_outcomes(session, ids[campaign], outcomes)
    jobs.set_context(jobs.WorkerContext(settings, redis_from_url(redis_url), store))
    yield store
    jobs.set_context(None)
    store.dispose()


def settings_of(store: Store) -> Settings:
    return jobs.get_context().settings


def the_list(tmp_path: Path) -> Path:
    """A rotated copy of picture 0 (PDQ), picture 1's MD5, and an unrelated PDQ."""
    path = tmp_path / "later.txt"
    lines = [
        f"pdq {hashes_of(rotated(PICTURES[0])).pdq}",
        f"md5 {hashes_of(PICTURES[1]).md5}",
        f"pdq {'0f' * 32}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def recorded(store: Store) -> set[tuple[str, int, str, str, int, str | None, bool]]:
    with store.session() as session:
        rows = session.execute(
            select(
                Sighting.image_url,
                Match.entry_id,
                Match.kind,
                Match.hash_kind,
                Match.distance,
                Match.variant,
                Match.retroactive,
            ).join(Sighting, Sighting.id == Match.sighting_id)
        )
        return {tuple(r) for r in rows}  # type: ignore[misc]


def test_a_later_list_matches_what_the_live_matcher_would_have(
    stored: Store, tmp_path: Path
) -> None:
    settings = settings_of(stored)
    import_list(stored, "later", the_list(tmp_path))
    assert recorded(stored) == set()  # importing alone matches nothing

    total = rematch_now(stored, settings, Selection("later", 1))
    assert (total["images"], total["matched_images"]) == (6, 2)
    assert total["matches"] == 3  # picture 0 under c1 and c2, picture 1 under c1

    # The live matcher, given the same list, decides exactly the same for every picture.
    with stored.session() as session:
        matcher = Matcher(
            list(active_entries(session)),
            default_threshold=settings.pdq_threshold,
            min_quality=settings.pdq_min_quality,
        )
    expected = {
        (f"http://{c}.example/img/{i}.jpg", d.entry_id, d.kind, d.hash_kind, d.distance,
         d.variant, True)
        for c, pictures in (("c1", range(6)), ("c2", [0]))
        for i in pictures
        for d in matcher.match(hashes_of(PICTURES[i]))
    }  # fmt: skip
    assert recorded(stored) == expected
    assert {r[2] for r in expected} == {"exact", "near"}
    assert any(r[5] not in (None, "original") for r in expected)  # found through a rotation

    # Again: nothing new (a retried job adds nothing twice).
    assert rematch_now(stored, settings, Selection("later", 1))["matches"] == 0
    assert len(recorded(stored)) == 3


def test_a_campaign_and_a_version_narrow_it(stored: Store, tmp_path: Path) -> None:
    settings = settings_of(stored)
    path = the_list(tmp_path)
    import_list(stored, "later", path)
    assert rematch_now(stored, settings, Selection("later", 1, "c2"))["matches"] == 1
    # Version 2 adds picture 2's MD5 only: rematching that version finds just it.
    path.write_text(path.read_text() + f"md5 {hashes_of(PICTURES[2]).md5}\n")
    import_list(stored, "later", path)
    assert rematch_now(stored, settings, Selection("later", 2))["matches"] == 1
    urls = {r[0] for r in recorded(stored)}
    assert urls == {"http://c2.example/img/0.jpg", "http://c1.example/img/2.jpg"}


def test_queued_on_the_workers_with_progress(stored: Store, tmp_path: Path) -> None:
    ctx = jobs.get_context()
    import_list(stored, "later", the_list(tmp_path))
    queue = image_queue(ctx.redis, ctx.settings)
    task, queued = enqueue_rematch(stored, ctx.redis, ctx.settings, Selection("later", 1))
    assert queued == 1 and progress(ctx.redis, task)["done"] == 0
    SimpleWorker([queue], connection=ctx.redis, serializer=JSONSerializer).work(burst=True)
    done = progress(ctx.redis, task)
    assert (done["done"], done["jobs"], done["matches"], done["images"]) == (1, 1, 3, 6)
    assert len(recorded(stored)) == 3


def test_cli_import_queues_it_and_rematch_wait_runs_it(stored: Store, tmp_path: Path) -> None:
    settings = settings_of(stored)
    env = {
        "ARACHNE_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": str(settings.redis_url),
        "ARACHNE_CONFIG": str(tmp_path / "none.toml"),
    }
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    runner = CliRunner()
    path = the_list(tmp_path)
    imported = runner.invoke(cli, ["lists", "import", str(path), "--name", "later"], env=env)
    assert imported.exit_code == 0, imported.output
    assert "rematch" in imported.stderr and "1 job(s)" in imported.stderr
    task = imported.stderr.split("(rematch ")[1].split(",")[0]
    status = runner.invoke(cli, ["rematch", "--status", task, "--json"], env=env)
    assert json.loads(status.stdout)["done"] == 0 and json.loads(status.stdout)["jobs"] == 1
    missing = runner.invoke(cli, ["rematch", "--status", "nope"], env=env)
    assert missing.exit_code == 2 and "no rematch task 'nope'" in missing.stderr
    waited = runner.invoke(cli, ["rematch", "--list", "later", "--wait", "--json"], env=env)
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["matches"] == 3
    shown = runner.invoke(cli, ["matches", "c1"], env=env)
    assert shown.stdout.count("(retroactive)") == 2
    rows = json.loads(runner.invoke(cli, ["matches", "c1", "--json"], env=env).stdout)
    assert all(r["retroactive"] for r in rows)
    unknown = runner.invoke(cli, ["rematch", "nope", "--wait"], env=env)
    assert unknown.exit_code == 2 and "no campaign named 'nope'" in unknown.stderr


def test_explain_says_which_entry_how_and_through_which_variant(
    stored: Store, tmp_path: Path
) -> None:
    settings = settings_of(stored)
    import_list(stored, "later", the_list(tmp_path))
    rematch_now(stored, settings, Selection("later", 1))
    env = {"ARACHNE_DATA_DIR": str(settings.data_dir), "ARACHNE_CONFIG": str(tmp_path / "x")}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    runner = CliRunner()
    url = "http://c1.example/img/0.jpg"
    shown = runner.invoke(cli, ["explain", "c1", url, "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.stdout)
    (match,) = found["matches"]
    assert (match["list"], match["kind"], match["hash_kind"]) == ("later", "near", "pdq")
    assert match["distance"] <= match["threshold"] == settings.pdq_threshold
    assert match["variant"] != "original" and "rotated" in match["variant_meaning"]
    assert match["retroactive"] is True
    hashes = hashes_of(PICTURES[0])
    assert found["image"]["pdq_quality"] == hashes.pdq_quality
    assert found["image"]["sha256"] == hashes.sha256
    assert found["page"] == "http://c1.example/"
    text = runner.invoke(cli, ["explain", "c1", "http://c1.example/img/1.jpg"], env=env).stdout
    assert "exact md5" in text and "seen " in text
    unseen = runner.invoke(cli, ["explain", "c1", "http://elsewhere.example/x.jpg"], env=env)
    assert unseen.exit_code == 2 and "has not seen" in unseen.stderr
    plain = runner.invoke(cli, ["explain", "c1", "http://c1.example/img/5.jpg"], env=env)
    assert plain.exit_code == 2 and "matched nothing" in plain.stderr


def test_near_misses_found_later_become_review_items(stored: Store, tmp_path: Path) -> None:
    from tests.test_store_review import flipped

    settings = settings_of(stored)
    path = tmp_path / "band.txt"
    path.write_text(f"pdq {flipped(hashes_of(PICTURES[3]).pdq or '', 38)}\n")
    import_list(stored, "band", path)
    total = rematch_now(stored, settings, Selection("band", 1, "c1"))
    assert (total["matches"], total["review_items"]) == (0, 1)
    from arachne.store.review import review_items

    with stored.session() as session:
        (item,) = review_items(session, "c1")
    assert item["url"] == "http://c1.example/img/3.jpg" and 31 < item["distance"] <= 45
    assert rematch_now(stored, settings, Selection("band", 1, "c1"))["review_items"] == 0


def test_big_rematches_leave_near_misses_out_unless_asked(
    stored: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import arachne.store.rematch as core
    from tests.test_store_review import flipped

    settings = settings_of(stored)
    path = tmp_path / "band.txt"
    path.write_text(f"pdq {flipped(hashes_of(PICTURES[3]).pdq or '', 38)}\n")
    import_list(stored, "band", path)
    assert rematch_now(stored, settings, Selection("band", review=False))["review_items"] == 0
    monkeypatch.setattr(core, "REVIEW_AUTO_MAX", 0)  # as if the list were big
    skipped = rematch_now(stored, settings, Selection("band"))
    assert (skipped["review_band"], skipped["review_items"]) == (0, 0)
    asked = rematch_now(stored, settings, Selection("band", review=True))
    assert (asked["review_band"], asked["review_items"]) == (settings.review_band, 1)


def test_many_ranges_in_forked_processes_find_the_same(
    stored: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import arachne.store.rematch as core

    monkeypatch.setattr(core, "RANGE_IMAGES", 2)  # 6 images: 3 ranges, 2 processes
    settings = settings_of(stored)
    import_list(stored, "later", the_list(tmp_path))
    seen: list[int] = []
    total = rematch_now(stored, settings, Selection("later", 1), lambda i, _c: seen.append(i))
    assert (total["ranges"], total["images"], total["matches"]) == (3, 6, 3)
    assert seen == [0, 1, 2]
    assert {r[0] for r in recorded(stored)} == {
        "http://c1.example/img/0.jpg", "http://c2.example/img/0.jpg", "http://c1.example/img/1.jpg"
    }  # fmt: skip
    assert rematch_now(stored, settings, Selection("later", 1))["matches"] == 0


def test_retroactive_matches_open_incidents_like_crawled_ones(
    stored: Store, tmp_path: Path
) -> None:
    """Notices are built from incidents: a rematch's matches open them as a crawl's do,
    and a retracted entry's matches stop counting."""
    from arachne.notices.incidents import sync_incidents
    from arachne.store.listversions import retract_ids
    from arachne.store.models import Incident, utcnow

    settings = settings_of(stored)
    path = tmp_path / "ids.csv"
    path.write_text(
        f"pdq,id\n{hashes_of(rotated(PICTURES[0])).pdq},rot\n{hashes_of(PICTURES[4]).pdq},plain\n"
    )
    import_list(stored, "ids", path)
    rematch_now(stored, settings, Selection("ids", 1))
    with stored.session() as session:
        report = sync_incidents(session, settings, utcnow())
        urls = sorted(session.scalars(select(Incident.url)))
    assert report.opened == 3
    assert urls == ["http://c1.example/img/0.jpg", "http://c1.example/img/4.jpg",
                    "http://c2.example/img/0.jpg"]  # fmt: skip
    retract_ids(stored, "ids", ["plain"])
    with stored.session() as session:
        assert sync_incidents(session, settings, utcnow()).total == 2
