"""Schema: Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from arachne.store.db import Store, make_engine, upgrade
from arachne.store.models import Base


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_models_and_are_idempotent(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'a.db'}"
    else:
        from tests.conftest import reset_postgres

        url = reset_postgres()
    engine = make_engine(url)
    upgrade(engine)
    upgrade(engine)  # a second run (another process starting) changes nothing
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert {
        "campaigns",
        "images",
        "sightings",
        "hash_lists",
        "hash_entries",
        "matches",
        "hosts",
        "notices",
        "rechecks",
        "audit_log",
    } <= tables
    engine.dispose()


def test_timestamps_come_back_timezone_aware(tmp_path: Path) -> None:
    from arachne.settings import Settings
    from arachne.store.campaigns import create_campaign, get_campaign

    store = Store.open(Settings(data_dir=tmp_path))
    with store.session() as s:
        create_campaign(s, "tz", ["http://a.example/"], {})
    with store.session() as s:
        created = get_campaign(s, "tz").created_at
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_data_stored_by_the_first_schema_still_loads(backend: str, tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from arachne.settings import Settings
    from arachne.store.db import alembic_config
    from arachne.store.hashlists import import_list, list_summaries
    from arachne.store.summary import get_campaign

    if backend == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        from tests.conftest import reset_postgres

        settings = Settings(data_dir=tmp_path, database_url=reset_postgres())
    engine = make_engine(settings.db_url)
    with engine.begin() as conn:  # a store written by revision 0001 (the first release)
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            text(
                "INSERT INTO campaigns (name, seeds, scope, status, created_at, stats) VALUES "
                "('old', '[\"http://a.example/\"]', '{\"allowed_hosts\": [\"a.example\"]}', "
                "'done', '2026-11-01 10:00:00+00:00', '{\"crawl/pages\": 3}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO hash_lists (name, format, imported_at, updated_at) VALUES "
                "('old-list', 'text', '2026-11-01 10:00:00+00:00', '2026-11-01 10:00:00+00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO hash_entries (list_id, kind, value, added_at) SELECT id, 'md5', "
                f"'{'a' * 32}', '2026-11-01 10:00:00+00:00' FROM hash_lists"
            )
        )
    engine.dispose()
    store = Store.open(settings)  # upgrades to the newest revision
    with store.session() as s:
        old = get_campaign(s, "old")
        assert old.status == "done" and old.stats == {"crawl/pages": 3}
        assert old.created_at.tzinfo is not None
        # Crawled before runs existed: its crawl is run 1, finished, with its figures.
        from arachne.store.runs import list_runs, open_run

        (run,) = list_runs(s, old.id)
        assert (run.number, run.status, run.stats) == (1, "done", {"crawl/pages": 3})
        new, is_new = open_run(s, "old")
        assert (new.number, is_new) == (2, True), "its next crawl is a new run"
    (summary,) = list_summaries(store)
    assert summary["name"] == "old-list" and summary["active"] == {"md5": 1}
    # ... and the old list can be updated by today's importer (retracting the old entry).
    path = tmp_path / "v2.txt"
    path.write_text(f"md5 {'b' * 32}\n")
    report = import_list(store, "old-list", path, force=True)
    assert (report.added, report.retracted, report.version) == (1, 1, 2)
    # The migration made the list's state then its version 1, which a rollback restores.
    from arachne.store.listversions import history, rollback

    first, second = history(store, "old-list")
    assert (first["action"], first["counts"]["active"]) == ("import", {"md5": 1})
    assert second["forced"] and second["source_sha256"] is not None
    assert rollback(store, "old-list", 1).counts["retracted"] == 1
    (summary,) = list_summaries(store)
    assert summary["active"] == {"md5": 1}
    store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_snapshot_does_not_see_a_commit_made_during_it(backend: str, tmp_path: Path) -> None:
    """Workers load their index in one snapshot: an import committed between two of its
    queries is not half-seen (issue 9: no torn index)."""
    from sqlalchemy import func, select

    from arachne.settings import Settings
    from arachne.store.hashlists import import_list
    from arachne.store.models import HashEntry

    if backend == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        from tests.conftest import reset_postgres

        settings = Settings(data_dir=tmp_path, database_url=reset_postgres())
    store = Store.open(settings)
    path = tmp_path / "l.txt"
    path.write_text(f"md5 {'a' * 32}\n")
    import_list(store, "l", path)
    with store.snapshot() as snap:
        before = snap.scalar(select(func.count(HashEntry.id)))
        path.write_text(f"md5 {'a' * 32}\nmd5 {'b' * 32}\n")
        import_list(store, "l", path)  # committed by another connection meanwhile
        during = snap.scalar(select(func.count(HashEntry.id)))
    with store.session() as s:
        after = s.scalar(select(func.count(HashEntry.id)))
    assert (before, during, after) == (1, 1, 2)
    store.dispose()
