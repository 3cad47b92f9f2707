"""Safe list updates (issue 9 §1): refused truncations, versions, rollback, retract, delete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from arachne.cli import cli
from arachne.store.db import Store
from arachne.store.hashlists import import_list, list_summaries
from arachne.store.listversions import (
    ListChangeRefused,
    UnknownList,
    delete_list,
    history,
    retract_ids,
    rollback,
)
from arachne.store.models import AuditLog
from tests.test_store_hashlists import active_keys, h, store, stored, write

__all__ = ["store"]  # the parametrised (SQLite, PostgreSQL) fixture

TEN = [f"md5 {h('md5', str(i))}" for i in range(10)]


def keys(lines: list[str]) -> set[tuple[str, str]]:
    return {tuple(line.split()[:2]) for line in lines}  # type: ignore[misc]


def test_a_truncated_file_is_refused_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    import_list(store, "vendor", write(tmp_path / "v1.txt", TEN))
    truncated = write(tmp_path / "v2.txt", TEN[:7])  # 3 of 10 would go: 30% > 20%
    with pytest.raises(ListChangeRefused, match=r"retract 3 of the 10 active .* \(30%"):
        import_list(store, "vendor", truncated)
    assert active_keys(store, "vendor") == keys(TEN)
    assert [v["version"] for v in history(store, "vendor")] == [1]  # no version was made

    # Within the share, or forced, the update goes through.
    report = import_list(store, "vendor", write(tmp_path / "v3.txt", TEN[:8] + ["md5 " + "f" * 32]))
    assert (report.added, report.retracted, report.version) == (1, 2, 2)
    report = import_list(store, "vendor", truncated, force=True)
    assert (report.retracted, report.version) == (2, 3)  # 2 of 9 (22%): forced
    assert active_keys(store, "vendor") == keys(TEN[:7])
    assert history(store, "vendor")[-1]["forced"] is True


def test_the_limit_is_a_setting(store: Store, tmp_path: Path) -> None:
    import_list(store, "vendor", write(tmp_path / "v1.txt", TEN))
    with pytest.raises(ListChangeRefused):
        import_list(store, "vendor", write(tmp_path / "v2.txt", TEN[:5]), max_retract_share=0.4)
    report = import_list(store, "vendor", tmp_path / "v2.txt", max_retract_share=0.5)
    assert report.retracted == 5


def test_a_new_list_from_an_empty_file_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ListChangeRefused, match="holds no entries"):
        import_list(store, "new", write(tmp_path / "empty.txt", ["# nothing yet"]))
    assert list_summaries(store) == []


def test_history_has_counts_and_the_source_files_sha256(store: Store, tmp_path: Path) -> None:
    v1 = write(
        tmp_path / "v1.csv", ["md5,category,id", f"{h('md5', 'a')},c1,A", f"{h('md5', 'b')},c1,B"]
    )
    v2 = write(
        tmp_path / "v2.csv", ["md5,category,id", f"{h('md5', 'a')},c2,A", f"{h('md5', 'b')},c1,B"]
    )
    import_list(store, "l", v1)
    import_list(store, "l", v2)
    first, second = history(store, "l")
    assert first["source_sha256"] == hashlib.sha256(v1.read_bytes()).hexdigest()
    assert second["source_sha256"] == hashlib.sha256(v2.read_bytes()).hexdigest()
    assert first["counts"] == {
        "added": 2, "updated": 0, "retracted": 0, "unchanged": 0, "skipped": {},
        "duplicates": 0, "conflicts": 0,
        "active": {"md5": 2},
    }  # fmt: skip
    assert (second["counts"]["updated"], second["counts"]["unchanged"]) == (1, 2)
    assert (first["action"], first["actor"], first["format"]) == ("import", "cli", "csv")
    # Every version is in the audit log too.
    with store.session() as session:
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["list.import", "list.import"]


def test_rollback_restores_entries_and_their_labels(store: Store, tmp_path: Path) -> None:
    a, b, c, d = (h("md5", s) for s in "abcd")
    header = "md5,category,id"
    import_list(
        store, "l", write(tmp_path / "v1.csv", [header, f"{a},x,A", f"{b},x,B", f"{c},x,C"])
    )
    import_list(
        store, "l", write(tmp_path / "v2.csv", [header, f"{b},y,B", f"{c},x,C", f"{d},x,D"]),
        force=True,
    )  # fmt: skip
    ids_before = {k: e.id for k, e in stored(store, "l").items()}

    report = rollback(store, "l", 1)
    assert (report.version, report.action) == (3, "rollback")
    assert (report.counts["added"], report.counts["retracted"], report.counts["updated"]) == (
        1,
        1,
        1,
    )
    entries = stored(store, "l")
    assert active_keys(store, "l") == {("md5", a), ("md5", b), ("md5", c)}
    assert entries["md5", b].category == "x"  # its label as it was at version 1
    assert entries["md5", d].deleted_at is not None  # added later: retracted, row kept
    assert {k: e.id for k, e in entries.items()} == ids_before  # no row added or removed

    # A rollback is a version like any other: going back to 2 undoes it.
    rollback(store, "l", 2)
    assert active_keys(store, "l") == {("md5", b), ("md5", c), ("md5", d)}
    assert stored(store, "l")["md5", b].category == "y"
    assert [v["action"] for v in history(store, "l")] == [
        "import",
        "import",
        "rollback",
        "rollback",
    ]

    with pytest.raises(ListChangeRefused, match="no version 9"):
        rollback(store, "l", 9)


def test_retract_by_external_id(store: Store, tmp_path: Path) -> None:
    a, b = h("pdq", "a"), h("pdq", "b")
    import_list(store, "l", write(tmp_path / "v1.csv", ["pdq,id", f"{a},item-1", f"{b},item-2"]))
    report = retract_ids(store, "l", ["item-2", "item-404"])
    assert (report.counts["retracted"], report.counts["unknown_ids"]) == (1, ["item-404"])
    assert active_keys(store, "l") == {("pdq", a)}
    with pytest.raises(ListChangeRefused, match="no entry with id item-404"):
        retract_ids(store, "l", ["item-404"])
    # Undone by a rollback like anything else.
    rollback(store, "l", 1)
    assert active_keys(store, "l") == {("pdq", a), ("pdq", b)}


def test_delete_hides_the_list_and_keeps_its_rows(store: Store, tmp_path: Path) -> None:
    import_list(store, "gone", write(tmp_path / "g.txt", TEN[:3]))
    import_list(store, "kept", write(tmp_path / "k.txt", TEN[3:]))
    delete_list(store, "gone")
    assert [s["name"] for s in list_summaries(store)] == ["kept"]
    assert active_keys(store, "gone") == set() and len(stored(store, "gone")) == 3
    with pytest.raises(UnknownList):
        history(store, "gone")
    # Importing the name again brings it back, its history going on.
    report = import_list(store, "gone", tmp_path / "g.txt")
    assert (report.added, report.version) == (3, 3)
    assert [s["name"] for s in list_summaries(store)] == ["gone", "kept"]


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {"ARACHNE_DATA_DIR": str(tmp_path / "data"), "ARACHNE_CONFIG": str(tmp_path / "no.toml")}


def test_cli_refuses_a_truncated_file_and_shows_history(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    runner = CliRunner()
    full, cut = write(tmp_path / "full.txt", TEN), write(tmp_path / "cut.txt", TEN[:2])
    assert runner.invoke(cli, ["lists", "import", str(full), "--name", "v"], env=env).exit_code == 0
    refused = runner.invoke(cli, ["lists", "import", str(cut), "--name", "v"], env=env)
    assert refused.exit_code == 2
    assert "would retract 8 of the 10 active entries" in refused.stderr
    assert "--force" in refused.stderr

    forced = runner.invoke(cli, ["lists", "import", str(cut), "--name", "v", "--force"], env=env)
    assert forced.exit_code == 0 and "version 2" in forced.stdout
    shown = runner.invoke(cli, ["lists", "history", "v", "--json"], env=env)
    versions = json.loads(shown.stdout)
    assert [(v["version"], v["forced"], v["counts"]["retracted"]) for v in versions] == [
        (1, False, 0),
        (2, True, 8),
    ]
    text = runner.invoke(cli, ["lists", "history", "v"], env=env).stdout
    assert "(forced)" in text and hashlib.sha256(cut.read_bytes()).hexdigest() in text

    back = runner.invoke(cli, ["lists", "rollback", "v", "--to", "1"], env=env)
    assert back.exit_code == 0 and "8 restored" in back.stdout

    # Delete asks first; "no" changes nothing.
    declined = runner.invoke(cli, ["lists", "delete", "v"], env=env, input="n\n")
    assert declined.exit_code == 1
    listed = runner.invoke(cli, ["lists", "--json"], env=env)
    assert [s["active_total"] for s in json.loads(listed.stdout)] == [10]
    deleted = runner.invoke(cli, ["lists", "delete", "v", "--yes"], env=env)
    assert deleted.exit_code == 0 and "10 retracted" in deleted.stdout
    assert json.loads(runner.invoke(cli, ["lists", "--json"], env=env).stdout) == []
    missing = runner.invoke(cli, ["lists", "retract", "nope", "--id", "x"], env=env)
    assert missing.exit_code == 2 and "no list named 'nope'" in missing.stderr


def test_repeats_and_conflicts_in_a_file_are_counted(store: Store, tmp_path: Path) -> None:
    a, b = h("md5", "a"), h("md5", "b")
    path = write(tmp_path / "v1.csv", ["md5,category,id", f"{a},c1,A", f"{a},c1,A", f"{a},c2,Z",
                                       f"{b},c1,B"])  # fmt: skip
    report = import_list(store, "l", path)
    assert (report.added, report.duplicates, report.conflicts) == (2, 2, 1)
    assert stored(store, "l")["md5", a].category == "c1"  # the first occurrence wins
    assert history(store, "l")[0]["counts"]["conflicts"] == 1


def test_a_hash_whose_kind_changes_between_versions(store: Store, tmp_path: Path) -> None:
    """A 64-hex value listed as SHA-256, then as PDQ: two different entries, the old one
    retracted (a whole-list file), its row kept; rollback brings the SHA-256 back."""
    value = h("sha256", "k")
    import_list(store, "l", write(tmp_path / "v1.txt", [f"sha256 {value}", *TEN[:4]]))
    report = import_list(store, "l", write(tmp_path / "v2.txt", [f"pdq {value}", *TEN[:4]]))
    assert (report.added, report.retracted) == (1, 1)  # 1 of 5: within the limit
    assert ("pdq", value) in active_keys(store, "l")
    assert ("sha256", value) not in active_keys(store, "l")
    rollback(store, "l", 1)
    assert ("sha256", value) in active_keys(store, "l")
    assert ("pdq", value) not in active_keys(store, "l")
