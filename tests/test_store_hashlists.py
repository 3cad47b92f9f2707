"""Importing lists into the store (SQLite and PostgreSQL): updates, retractions, summaries.

PostgreSQL runs in its own database, ``arachne_lists_test``, recreated per test, so these
tests never collide with others using the shared ``test`` database.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arachne.errors import ListFormatError
from arachne.store.db import Store
from arachne.store.hashlists import active_entries, import_list, list_summaries
from arachne.store.listversions import ListChangeRefused
from arachne.store.models import HashEntry, HashList
from tests.conftest import open_test_store

PG_DATABASE = "arachne_lists_test"


def h(kind: str, seed: str) -> str:
    """A stand-in hash of the right length, derived from a benign string."""
    digest = {"md5": hashlib.md5, "sha1": hashlib.sha1}.get(kind, hashlib.sha256)
    return digest(seed.encode()).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_test_store(request.param, tmp_path, PG_DATABASE)
    yield opened
    opened.dispose()


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def stored(store: Store, name: str) -> dict[tuple[str, str], HashEntry]:
    with store.session() as session:
        entries = session.scalars(
            select(HashEntry).join(HashList).where(HashList.name == name)
        ).all()
        return {(e.kind, e.value): e for e in entries}


def active_keys(store: Store, name: str) -> set[tuple[str, str]]:
    return {k for k, e in stored(store, name).items() if e.deleted_at is None}


def counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        return (
            session.scalar(select(func.count()).select_from(HashList)) or 0,
            session.scalar(select(func.count()).select_from(HashEntry)) or 0,
        )


# ---------------------------------------------------------------- first import


def test_import_text_list(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path / "known.txt",
        ["# benign", f"pdq {h('pdq', 'a').upper()}", f"md5 {h('md5', 'a')} cat-1", h("sha1", "a")],
    )
    report = import_list(store, "known", path, threshold=20, source="test fixture")
    assert (report.name, report.format) == ("known", "text")
    assert (report.added, report.retracted, report.unchanged) == (3, 0, 0)
    assert report.by_kind == {"pdq": 1, "md5": 1, "sha1": 1}
    entries = stored(store, "known")
    assert set(entries) == {
        ("pdq", h("pdq", "a")),
        ("md5", h("md5", "a")),
        ("sha1", h("sha1", "a")),
    }
    assert entries["md5", h("md5", "a")].category == "cat-1"
    assert all(e.deleted_at is None and e.added_at is not None for e in entries.values())
    with store.session() as session:
        hash_list = session.scalar(select(HashList))
        assert hash_list is not None
        assert (hash_list.format, hash_list.threshold, hash_list.source) == (
            "text",
            20,
            "test fixture",
        )


def test_import_csv_list_with_ids_and_thresholds(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "known.csv"
    path.write_bytes(
        b"\xef\xbb\xbfID,MD5,PDQ,Category,Threshold\r\n"
        + f"x-1,{h('md5', 'b')},{h('pdq', 'b')},cat-b,12\r\n".encode()
    )
    report = import_list(store, "csv-list", path)
    assert report.format == "csv"
    assert (report.added, report.by_kind) == (2, {"md5": 1, "pdq": 1})
    entries = stored(store, "csv-list")
    pdq = entries["pdq", h("pdq", "b")]
    assert (pdq.external_id, pdq.category, pdq.threshold) == ("x-1", "cat-b", 12)
    assert entries["md5", h("md5", "b")].threshold is None
    with store.session() as session:
        assert session.scalar(select(HashList.source)) == str(path)


def test_import_with_kind_for_bare_64_hex(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "bare.txt", [h("pdq", "c")])
    with pytest.raises(ListFormatError, match="--kind"):
        import_list(store, "bare", path)
    assert counts(store) == (0, 0)
    assert import_list(store, "bare", path, kind="sha256").by_kind == {"sha256": 1}


# ---------------------------------------------------------------- malformed: nothing written


def test_malformed_new_list_writes_nothing(store: Store, tmp_path: Path) -> None:
    good = [f"md5 {h('md5', str(i))}" for i in range(50)]
    path = write(tmp_path / "bad.txt", [*good, "md5 nothex", *good])
    with pytest.raises(ListFormatError) as info:
        import_list(store, "bad", path)
    assert info.value.line == 51
    assert counts(store) == (0, 0)


def test_malformed_new_version_leaves_old_version_intact(store: Store, tmp_path: Path) -> None:
    first = write(tmp_path / "v1.txt", [f"md5 {h('md5', 'keep')}", f"md5 {h('md5', 'also')}"])
    import_list(store, "known", first)
    with store.session() as session:
        before = session.scalar(select(HashList.updated_at))
    bad = tmp_path / "v2.csv"
    bad.write_text(f"md5,id\n{h('md5', 'new')},1\n{h('md5', 'x')[:-1]},2\n")
    with pytest.raises(ListFormatError) as info:
        import_list(store, "known", bad)
    assert info.value.line == 3
    assert active_keys(store, "known") == {("md5", h("md5", "keep")), ("md5", h("md5", "also"))}
    assert counts(store) == (1, 2)
    with store.session() as session:
        hash_list = session.scalar(select(HashList))
        assert hash_list is not None
        assert (hash_list.updated_at, hash_list.format) == (before, "text")


def test_threshold_out_of_range_is_refused_before_writing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "k.txt", [f"md5 {h('md5', 'a')}"])
    with pytest.raises(ValueError, match="between 0 and 128"):
        import_list(store, "k", path, threshold=129)
    assert counts(store) == (0, 0)


# ---------------------------------------------------------------- updates and retractions


def test_reimport_newer_version_adds_retracts_restores(store: Store, tmp_path: Path) -> None:
    a, b, c, d = (f"md5 {h('md5', s)}" for s in "abcd")
    import_list(store, "known", write(tmp_path / "v1.txt", [a, b, c]))
    ids_v1 = {k: e.id for k, e in stored(store, "known").items()}

    report = import_list(store, "known", write(tmp_path / "v2.txt", [b, c, d]), force=True)
    assert (report.added, report.retracted, report.unchanged) == (1, 1, 2)
    assert report.by_kind == {"md5": 3}
    entries = stored(store, "known")
    assert entries["md5", h("md5", "a")].deleted_at is not None
    assert active_keys(store, "known") == {("md5", h("md5", s)) for s in "bcd"}

    # v3 brings a back: the same row is restored, not a second one inserted.
    report = import_list(store, "known", write(tmp_path / "v3.txt", [a, d]), force=True)
    assert (report.added, report.retracted, report.unchanged) == (1, 2, 1)
    entries = stored(store, "known")
    assert entries["md5", h("md5", "a")].id == ids_v1["md5", h("md5", "a")]
    assert entries["md5", h("md5", "a")].deleted_at is None
    assert active_keys(store, "known") == {("md5", h("md5", "a")), ("md5", h("md5", "d"))}
    assert counts(store) == (1, 4)

    # The same file again changes nothing.
    report = import_list(store, "known", tmp_path / "v3.txt")
    assert (report.added, report.retracted, report.unchanged) == (0, 0, 2)


def test_reimport_updates_metadata_of_unchanged_entries(store: Store, tmp_path: Path) -> None:
    value = h("pdq", "m")
    import_list(store, "l", write(tmp_path / "v1.csv", ["pdq,category,id", f"{value},old,1"]))
    report = import_list(
        store, "l", write(tmp_path / "v2.csv", ["pdq,category,threshold", f"{value},new,9"])
    )
    assert (report.added, report.unchanged) == (0, 1)
    entry = stored(store, "l")["pdq", value]
    assert (entry.category, entry.external_id, entry.threshold) == ("new", None, 9)


def test_reimport_to_an_empty_version_retracts_everything(store: Store, tmp_path: Path) -> None:
    import_list(store, "l", write(tmp_path / "v1.txt", [f"md5 {h('md5', 'a')}"]))
    emptied = write(tmp_path / "v2.txt", ["# emptied"])
    with pytest.raises(ListChangeRefused, match="holds no entries"):
        import_list(store, "l", emptied)  # an empty file is refused unless forced
    assert active_keys(store, "l") == {("md5", h("md5", "a"))}
    report = import_list(store, "l", emptied, force=True)
    assert (report.added, report.retracted, report.by_kind) == (0, 1, {})


def test_lists_are_independent(store: Store, tmp_path: Path) -> None:
    shared = f"md5 {h('md5', 'shared')}"
    import_list(store, "one", write(tmp_path / "one.txt", [shared]))
    import_list(store, "two", write(tmp_path / "two.txt", [shared]))
    import_list(store, "one", write(tmp_path / "one-v2.txt", []), force=True)
    assert active_keys(store, "one") == set()
    assert active_keys(store, "two") == {("md5", h("md5", "shared"))}


def test_list_threshold_kept_unless_given(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "k.txt", [f"pdq {h('pdq', 'a')}"])
    import_list(store, "k", path, threshold=25)
    import_list(store, "k", path)
    assert list_summaries(store)[0]["threshold"] == 25
    import_list(store, "k", path, threshold=10)
    assert list_summaries(store)[0]["threshold"] == 10


# ---------------------------------------------------------------- summaries and streaming


def test_list_summaries_counts_and_never_hash_values(store: Store, tmp_path: Path) -> None:
    values = [f"md5 {h('md5', str(i))}" for i in range(5)] + [f"pdq {h('pdq', 'p')}"]
    import_list(store, "b-list", write(tmp_path / "b1.txt", values), threshold=30)
    import_list(store, "b-list", write(tmp_path / "b2.txt", values[2:]), force=True)
    import_list(store, "a-list", write(tmp_path / "a.csv", ["sha1", h("sha1", "s")]))

    summaries = list_summaries(store)
    assert [s["name"] for s in summaries] == ["a-list", "b-list"]
    a, b = summaries
    assert (a["format"], a["threshold"], a["active"], a["active_total"], a["retracted"]) == (
        "csv",
        None,
        {"sha1": 1},
        1,
        0,
    )
    assert (b["format"], b["threshold"], b["active"], b["active_total"], b["retracted"]) == (
        "text",
        30,
        {"md5": 3, "pdq": 1},
        4,
        2,
    )
    assert b["updated_at"] > b["imported_at"]
    dumped = json.dumps(summaries)
    for line in values:
        assert line.split()[1] not in dumped
    assert h("sha1", "s") not in dumped


def test_active_entries_streams_thresholds_and_skips_retracted(
    store: Store, tmp_path: Path
) -> None:
    p1, p2, p3 = h("pdq", "1"), h("pdq", "2"), h("pdq", "3")
    m = h("md5", "m")
    import_list(
        store,
        "with",
        write(tmp_path / "w.csv", ["pdq,threshold", f"{p1},5", f"{p2},"]),
        threshold=20,
    )
    import_list(store, "without", write(tmp_path / "wo.txt", [f"pdq {p3}", f"md5 {m}"]))
    import_list(store, "gone", write(tmp_path / "g1.txt", [f"md5 {h('md5', 'gone')}"]))
    import_list(store, "gone", write(tmp_path / "g2.txt", []), force=True)

    with store.session() as session:
        rows = list(active_entries(session))
        lists = dict(session.execute(select(HashList.name, HashList.id)).all())
        pdq_only = list(active_entries(session, kinds=["pdq"]))
    by_value = {row[3]: row for row in rows}
    assert set(by_value) == {p1, p2, p3, m}
    assert all(isinstance(row, tuple) and len(row) == 5 for row in rows)
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert by_value[p1][1:] == (lists["with"], "pdq", p1, 5)  # entry's own threshold
    assert by_value[p2][1:] == (lists["with"], "pdq", p2, 20)  # the list's
    assert by_value[p3][1:] == (lists["without"], "pdq", p3, None)  # global default
    assert by_value[m][2] == "md5"
    assert {row[3] for row in pdq_only} == {p1, p2, p3}


# ---------------------------------------------------------------- size


def test_thousand_entry_import_and_update(store: Store, tmp_path: Path) -> None:
    rng = random.Random(7)
    first = [f"pdq {rng.getrandbits(256):064x}" for _ in range(1000)]
    report = import_list(store, "big", write(tmp_path / "big1.txt", first))
    assert (report.added, report.by_kind) == (1000, {"pdq": 1000})

    second = first[250:] + [f"md5 {rng.getrandbits(128):032x}" for _ in range(100)]
    report = import_list(
        store, "big", write(tmp_path / "big2.txt", second), max_retract_share=0.25
    )  # 250 of 1,000 retracted: allowed by a raised limit
    assert (report.added, report.retracted, report.unchanged) == (100, 250, 750)
    assert report.by_kind == {"pdq": 750, "md5": 100}
    with store.session() as session:
        streamed = {(row[2], row[3]) for row in active_entries(session)}
    assert streamed == {tuple(line.split()) for line in second}
    assert counts(store) == (1, 1100)
