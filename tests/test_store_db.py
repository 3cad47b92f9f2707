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
