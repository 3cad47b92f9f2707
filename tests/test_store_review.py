"""Near-miss review (issue 9 §3): questions for analysts, never notices; their decisions
become matches or suppressions, with who and when in the audit log."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from arachne.cli import cli
from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.matcher.match import Matcher
from arachne.notices.incidents import sync_incidents
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import active_entries, import_list
from arachne.store.listversions import history
from arachne.store.models import AuditLog, Campaign, Incident, Match, ReviewItem, utcnow
from arachne.store.records import ImageOutcome, record_outcomes
from arachne.store.review import ReviewError, decide, review_items
from tests.conftest import open_test_store
from tests.imageserver import make_image

PICTURE = make_image(11, size=(240, 180))
OTHER = make_image(12, size=(240, 180))


def flipped(hex_hash: str, bits: int, seed: int = 3) -> str:
    """``hex_hash`` with ``bits`` of its bits flipped: a stand-in list entry at a known
    distance from a benign picture's hash."""
    value = int(hex_hash, 16)
    for bit in random.Random(seed).sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


def hashes(data: bytes) -> ImageHashes:
    return hash_image_bytes(data, reference=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_test_store(request.param, tmp_path, "arachne_review_test")
    with opened.session() as session:
        create_campaign(session, "c1", ["http://c1.example/"], {})
    yield opened
    opened.dispose()


def matcher_for(store: Store, settings: Settings) -> Matcher:
    with store.session() as session:
        return Matcher(
            list(active_entries(session)),
            default_threshold=settings.pdq_threshold,
            min_quality=settings.pdq_min_quality,
            review_band=settings.review_band,
        )


def crawl(store: Store, matcher: Matcher, url: str, data: bytes) -> None:
    h = hashes(data)
    matches, near = matcher.decide(h)
    outcome = ImageOutcome(url, "http://c1.example/", "c1.example", http_status=200, hashes=h,
                           decisions=matches, near_misses=near)  # fmt: skip
    with store.session() as session:
        cid = session.scalar(select(Campaign.id).where(Campaign.name == "c1"))
        record_outcomes(session, cid, [outcome])


def counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Match)) or 0,
            session.scalar(select(func.count()).select_from(ReviewItem)) or 0,
        )


def near_miss_list(tmp_path: Path, distance: int = 38) -> Path:
    path = tmp_path / "vendor.txt"
    path.write_text(
        f"pdq {flipped(hashes(PICTURE).pdq or '', distance)}\n"
        f"pdq {flipped(hashes(OTHER).pdq or '', 20)}\n"  # within the threshold: a match
    )
    return path


def test_the_band_splits_matches_from_questions(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    h = hashes(PICTURE)
    entries = [(1, 1, "pdq", flipped(h.pdq or "", 38), None),
               (2, 1, "pdq", flipped(h.pdq or "", 20, seed=4), None),
               (3, 1, "pdq", flipped(h.pdq or "", 60, seed=5), None)]  # fmt: skip
    matcher = Matcher(entries, review_band=settings.review_band)
    matches, near = matcher.decide(h)
    assert [(d.entry_id, d.kind) for d in matches] == [(2, "near")]
    assert [(d.entry_id, d.kind) for d in near] == [(1, "review")]
    assert 31 < near[0].distance <= 45
    assert matcher.match(h) == matches  # match() never returns near misses
    assert Matcher(entries, review_band=0).decide(h)[1] == []  # review off


def test_near_misses_wait_for_an_analyst_and_never_notice(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    import_list(store, "vendor", near_miss_list(tmp_path))
    matcher = matcher_for(store, settings)
    crawl(store, matcher, "http://c1.example/a.jpg", PICTURE)
    crawl(store, matcher, "http://c1.example/b.jpg", OTHER)
    assert counts(store) == (1, 1)
    with store.session() as session:
        (item,) = review_items(session, "c1")
        sync_incidents(session, settings, utcnow())
        incidents = session.scalars(select(Incident.url)).all()
    assert incidents == ["http://c1.example/b.jpg"]  # the match only, not the near miss
    assert (item["url"], item["state"], item["list"]) == (
        "http://c1.example/a.jpg",
        "pending",
        "vendor",
    )

    with store.session() as session:
        decide(session, item["id"], "confirmed", actor="ana", note="same series")
    with store.session() as session:
        sync_incidents(session, settings, utcnow())
        assert sorted(session.scalars(select(Incident.url)).all()) == [
            "http://c1.example/a.jpg",
            "http://c1.example/b.jpg",
        ]
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "review.confirm")).one()
        assert (audit.actor, audit.detail["note"]) == ("ana", "same series")
        with pytest.raises(ReviewError, match="already confirmed by ana"):
            decide(session, item["id"], "rejected", actor="bo")


def test_a_rejected_pair_is_never_recorded_again(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    import_list(store, "vendor", near_miss_list(tmp_path))
    matcher = matcher_for(store, settings)
    crawl(store, matcher, "http://c1.example/a.jpg", PICTURE)
    with store.session() as session:
        (item,) = review_items(session)
        decide(session, item["id"], "rejected", actor="bo", note="a different picture")
    # The same picture at another URL: no new question about it.
    crawl(store, matcher, "http://c1.example/again.jpg", PICTURE)
    assert counts(store) == (0, 1)
    with store.session() as session:
        assert review_items(session) == []
        assert [i["state"] for i in review_items(session, state=None)] == ["rejected"]


def test_cli_lists_and_decides_and_can_add_to_a_local_list(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    import_list(store, "vendor", near_miss_list(tmp_path))
    crawl(store, matcher_for(store, settings), "http://c1.example/a.jpg", PICTURE)
    env = {"ARACHNE_DATA_DIR": str(tmp_path), "ARACHNE_CONFIG": str(tmp_path / "none.toml")}
    url = str(store.engine.url.render_as_string(hide_password=False))
    if url.startswith("postgresql"):
        env["DATABASE_URL"] = url
    runner = CliRunner()
    listed = runner.invoke(cli, ["review", "list", "c1", "--json"], env=env)
    (item,) = json.loads(listed.stdout)
    decided = runner.invoke(
        cli,
        ["review", "decide", str(item["id"]), "confirm", "--add-to", "confirmed-local",
         "--by", "ana", "--json"],
        env=env,
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    assert json.loads(decided.stdout)["list_version"] == 1
    (version,) = history(store, "confirmed-local")
    assert (version["action"], version["actor"], version["counts"]["active"]) == (
        "add", "ana", {"pdq": 1})  # fmt: skip
    # The picture itself now matches exactly through the local list.
    assert any(d.distance == 0 for d in matcher_for(store, settings).match(hashes(PICTURE)))
    again = runner.invoke(cli, ["review", "decide", str(item["id"]), "reject"], env=env)
    assert again.exit_code == 2 and "already confirmed" in again.stderr
    wrong = runner.invoke(cli, ["review", "decide", "999", "reject"], env=env)
    assert wrong.exit_code == 2 and "no review item 999" in wrong.stderr
