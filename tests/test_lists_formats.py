"""Every list format operators receive, end to end: detection, import, thresholds, updates.

The sample files under ``tests/data/lists`` hold digests of the benign shared photos (see
its README). Store tests run on SQLite and on PostgreSQL in their own database,
``arachne_lists_formats_test``, recreated per test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arachne.errors import ListFormatError
from arachne.matcher.lists import FORMATS, detect_format, parse_list
from arachne.store.db import Store
from arachne.store.hashlists import active_entries, import_list, list_summaries
from arachne.store.models import HashEntry, HashList
from tests.conftest import PHOTOS, open_test_store

DATA = Path(__file__).parent / "data" / "lists"
PG_DATABASE = "arachne_lists_formats_test"

SAMPLES = {
    "vics-export.json": "vics",
    "vics-v1-cases.json": "vics",
    "ncmec-entries.xml": "ncmec",
    "threatexchange-pdq.txt": "text",
    "known.csv": "csv",
    "plain.md5": "text",
    "plain.sha1": "text",
    "plain-sha256.txt": "text",
}


def sample_files() -> list[Path]:
    return sorted(p for p in DATA.iterdir() if p.name != "README.md")


# ---------------------------------------------------------------- detection, parsing


def test_every_sample_file_has_an_expected_format() -> None:
    assert {p.name for p in sample_files()} == set(SAMPLES)
    assert set(SAMPLES.values()) == set(FORMATS)  # every format has a sample


@pytest.mark.parametrize(("name", "expected"), sorted(SAMPLES.items()))
def test_detect_format_of_samples(name: str, expected: str) -> None:
    assert detect_format(DATA / name) == expected
    parsed = parse_list(DATA / name)
    assert parsed.format == expected
    assert parsed.entries


@pytest.mark.parametrize(("name", "expected"), sorted(SAMPLES.items()))
def test_detection_does_not_rely_on_the_file_name(tmp_path: Path, name: str, expected: str) -> None:
    # Structured formats are recognised by content alone; plain hex lists by content too
    # (a bare 64-hex list needs its name or --kind for the kind, not for the format).
    renamed = tmp_path / "download.bin"
    shutil.copyfile(DATA / name, renamed)
    assert detect_format(renamed) == expected


def test_sample_hashes_are_digests_of_the_benign_photos() -> None:
    """Guards the samples' provenance: no hash here may come from anywhere else."""
    assert PHOTOS.is_dir(), f"benign photos not found at {PHOTOS}"
    digests = set()
    for photo in PHOTOS.iterdir():
        data = photo.read_bytes()
        digests |= {f(data).hexdigest() for f in (hashlib.md5, hashlib.sha1, hashlib.sha256)}
    for path in sample_files():
        parsed = parse_list(path)
        exact = {e.value for e in parsed.entries if e.kind != "pdq"}
        assert exact <= digests, path.name


# ---------------------------------------------------------------- store fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_test_store(request.param, tmp_path, PG_DATABASE)
    yield opened
    opened.dispose()


def entries_of(store: Store, name: str) -> dict[tuple[str, str], HashEntry]:
    with store.session() as session:
        rows = session.scalars(select(HashEntry).join(HashList).where(HashList.name == name))
        return {(e.kind, e.value): e for e in rows}


def active(store: Store, name: str) -> set[tuple[str, str]]:
    return {k for k, e in entries_of(store, name).items() if e.deleted_at is None}


def counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        return (
            session.scalar(select(func.count()).select_from(HashList)) or 0,
            session.scalar(select(func.count()).select_from(HashEntry)) or 0,
        )


# ---------------------------------------------------------------- import, threshold


def test_import_every_sample_reports_format_kinds_and_skipped(store: Store) -> None:
    for name, expected in SAMPLES.items():
        parsed = parse_list(DATA / name)
        report = import_list(store, name, DATA / name)
        assert report.format == expected
        assert report.by_kind == parsed.by_kind()
        assert report.skipped == parsed.skipped
    assert import_list(store, "again", DATA / "vics-export.json").skipped == {
        "imagemark": 1,
        "photodna": 3,
    }
    assert import_list(store, "ncmec", DATA / "ncmec-entries.xml").skipped == {
        "photodna": 2,
        "video": 3,
    }
    assert import_list(store, "text", DATA / "plain.md5").skipped == {}


def test_per_list_threshold_applies_to_every_format(store: Store) -> None:
    thresholds = {"vics-export.json": 12, "ncmec-entries.xml": 40, "known.csv": 25}
    for name, threshold in thresholds.items():
        import_list(store, name, DATA / name, threshold=threshold)
    import_list(store, "te", DATA / "threatexchange-pdq.txt")  # no list threshold
    with store.session() as session:
        lists = {v: k for k, v in session.execute(select(HashList.name, HashList.id)).all()}
        pdq = [(lists[row[1]], row[3], row[4]) for row in active_entries(session, ["pdq"])]
    by_list: dict[str, set[int | None]] = {}
    for list_name, _value, threshold in pdq:
        by_list.setdefault(list_name, set()).add(threshold)
    assert by_list["vics-export.json"] == {12}
    assert by_list["ncmec-entries.xml"] == {40}
    assert by_list["known.csv"] == {20, 25}  # the row's own threshold wins over the list's
    assert by_list["te"] == {None}  # the global default
    assert [s["threshold"] for s in list_summaries(store)] == [25, 40, None, 12]


# ---------------------------------------------------------------- updates across formats


def test_vics_reimport_updates_and_retracts(store: Store, tmp_path: Path) -> None:
    first = import_list(store, "vic", DATA / "vics-export.json")
    assert (first.added, first.retracted) == (11, 0)
    document = json.loads((DATA / "vics-export.json").read_text())
    media = document["value"]
    media[0]["Category"] = 2  # re-categorised
    del media[1]  # withdrawn from the set: its md5, sha1 and pdq go
    media.append({"MediaID": 5, "Category": 1, "MD5": hashlib.md5(b"new").hexdigest()})
    newer = tmp_path / "vics-export-2.json"
    newer.write_text(json.dumps(document))

    report = import_list(store, "vic", newer, force=True)  # 3 of 11 go: over 20%
    assert (report.added, report.retracted, report.unchanged) == (1, 3, 8)
    entries = entries_of(store, "vic")
    assert entries["md5", "f24210802e8d0690e0c1c2302f907cc4"].category == "2"
    gone = entries["md5", "0f1b4a59504988622035d850dc0555ac"]
    assert (gone.deleted_at is not None, gone.external_id) == (True, "2")
    assert ("md5", hashlib.md5(b"new").hexdigest()) in active(store, "vic")
    assert len(active(store, "vic")) == 9


def test_ncmec_delta_retracts_only_what_it_deletes(store: Store, tmp_path: Path) -> None:
    first = import_list(store, "ncmec", DATA / "ncmec-entries.xml")
    assert (first.added, first.retracted, first.by_kind) == (5, 0, {"md5": 2, "sha1": 2, "pdq": 1})
    image1 = {k for k, e in entries_of(store, "ncmec").items() if e.external_id == "42-image1"}
    image2 = {k for k, e in entries_of(store, "ncmec").items() if e.external_id == "43-image2"}
    assert (len(image1), len(image2)) == (3, 2)

    # The next delta deletes image1 and adds image3; it says nothing about image2.
    new_md5 = hashlib.md5(b"image3").hexdigest()
    delta = tmp_path / "delta-2.xml"
    delta.write_text(
        '<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2"><images>'
        '<deletedImage><member id="42">M</member><id>image1</id></deletedImage>'
        f'<image><member id="42">M</member><id>image3</id><classification>B1</classification>'
        f"<fingerprints><md5>{new_md5}</md5></fingerprints></image>"
        "</images></queryResult>"
    )
    report = import_list(store, "ncmec", delta)
    assert (report.added, report.retracted, report.unchanged) == (1, 3, 0)
    assert active(store, "ncmec") == image2 | {("md5", new_md5)}
    retracted = entries_of(store, "ncmec")
    assert all(retracted[k].deleted_at is not None for k in image1)

    # Re-listing image1 later restores the same rows.
    ids = {k: retracted[k].id for k in image1}
    report = import_list(store, "ncmec", DATA / "ncmec-entries.xml")
    assert (report.added, report.retracted, report.unchanged) == (3, 0, 2)
    assert {k: e.id for k, e in entries_of(store, "ncmec").items() if k in image1} == ids
    assert active(store, "ncmec") == image1 | image2 | {("md5", new_md5)}


def test_ncmec_deletion_spares_a_hash_another_item_in_the_file_lists(
    store: Store, tmp_path: Path
) -> None:
    shared = hashlib.md5(b"shared").hexdigest()

    def image(member: str, id_: str) -> str:
        return (
            f'<image><member id="{member}"/><id>{id_}</id>'
            f"<fingerprints><md5>{shared}</md5></fingerprints></image>"
        )

    first = tmp_path / "d1.xml"
    first.write_text(f"<queryResult><images>{image('42', 'a')}</images></queryResult>")
    import_list(store, "n", first)
    second = tmp_path / "d2.xml"
    second.write_text(
        "<queryResult><images><deletedImage><member id='42'/><id>a</id></deletedImage>"
        f"{image('43', 'b')}</images></queryResult>"
    )
    report = import_list(store, "n", second)
    assert (report.retracted, report.unchanged) == (0, 1)
    assert entries_of(store, "n")["md5", shared].external_id == "43-b"
    assert active(store, "n") == {("md5", shared)}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("plain.md5", "threatexchange-pdq.txt", (4, 3, 0)),  # text → text: a snapshot
        ("known.csv", "plain.md5", (3, 6, 0)),  # a list may change format between versions
        ("vics-export.json", "plain.md5", (0, 8, 3)),
    ],
)
def test_snapshot_formats_replace_the_list(
    store: Store, first: str, second: str, expected: tuple[int, int, int]
) -> None:
    import_list(store, "l", DATA / first)
    report = import_list(store, "l", DATA / second, force=True)  # another file altogether
    assert (report.added, report.retracted, report.unchanged) == expected
    assert report.format == SAMPLES[second]
    assert {k for k in active(store, "l")} == {e.key for e in parse_list(DATA / second).entries}


# ---------------------------------------------------------------- malformed: nothing written


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # The last matchable MD5 of each file (a video's MD5 is skipped, so not checked).
        ("vics-v1-cases.json", "83D5E6CA6FB2724CDB5CF64CF891F7A8"),
        ("ncmec-entries.xml", "314296A0A5DD3C394E57F4EFAC733C20"),
        ("known.csv", "83d5e6ca6fb2724cdb5cf64cf891f7a8"),
        ("plain.md5", "511130d2072cc744a1fa5015bc23557a"),
    ],
)
def test_malformed_newer_version_is_refused_and_nothing_changes(
    store: Store, tmp_path: Path, name: str, value: str
) -> None:
    import_list(store, "l", DATA / name, threshold=10)
    before = {k: (e.id, e.deleted_at, e.category) for k, e in entries_of(store, "l").items()}
    source = (DATA / name).read_text()
    assert source.count(value) == 1
    line = source[: source.index(value)].count("\n") + 1
    bad = tmp_path / f"v2-{name}"
    bad.write_text(source.replace(value, value[:-1]))  # one digit short

    with pytest.raises(ListFormatError, match="32 hex digits.*31|31 characters") as info:
        import_list(store, "l", bad, threshold=30)
    assert info.value.path == str(bad)
    if name.endswith(".json"):
        # JSON names the line where the bad Media object starts, a few lines up.
        assert 1 < info.value.line < line
        assert bad.read_text().splitlines()[info.value.line - 1].strip() == "{"
    else:
        assert info.value.line == line
    after = {k: (e.id, e.deleted_at, e.category) for k, e in entries_of(store, "l").items()}
    assert after == before
    assert list_summaries(store)[0]["threshold"] == 10


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("bomb.xml", '<!DOCTYPE q [<!ENTITY a "aaaa">]>\n<queryResult>&a;</queryResult>'),
        ("cut.xml", '<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2"><images>'),
        ("cut.json", '{"@odata.context": "x#Media", "value": [{"MD5": "'),
    ],
)
def test_malformed_new_list_writes_nothing(
    store: Store, tmp_path: Path, name: str, body: str
) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(ListFormatError) as info:
        import_list(store, "new", path)
    assert info.value.line is not None
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")
    assert counts(store) == (0, 0)
