"""Shared fixtures: real Redis (db 15, flushed per test), real PostgreSQL, settings, photos."""

from __future__ import annotations

import os
import signal
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from arachne.settings import Settings
from arachne.store.db import Store

# Fixtures shared by several test modules, kept in their own files.
pytest_plugins = ["tests.notices_world", "tests.contacts_world"]

REDIS_TEST_URL = os.environ.get("ARACHNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get(
    "ARACHNE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_TEST_URL = os.environ.get(
    "ARACHNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PHOTOS = Path(os.environ.get("ARACHNE_DEMO_PHOTOS_DIR", SHARED / "data" / "photos"))
PDQ_VECTORS = SHARED / "data" / "pdq-vectors"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's REDIS_URL/DATABASE_URL/ARACHNE_* or arachne.toml."""
    for name in list(os.environ):
        if name.startswith("ARACHNE_") and not name.startswith("ARACHNE_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ARACHNE_CONFIG", str(tmp_path / "no-such-arachne.toml"))
    monkeypatch.setenv("ARACHNE_DEMO_PHOTOS_DIR", str(PHOTOS))


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """An in-process rq worker installs its own SIGINT/SIGTERM handlers and leaves them:
    each test starts with the handlers the one before it found."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def reset_postgres(url: str = PG_TEST_URL) -> str:
    """Empty the test database's public schema (tables, Alembic version, everything)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def postgres_url() -> str:
    return reset_postgres()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults: SQLite in tmp_path (Redis only where a test asks for it)."""
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def photos() -> Path:
    if not PHOTOS.is_dir():
        pytest.fail(f"benign test photos not found at {PHOTOS}")
    return PHOTOS


def fresh_postgres_database(name: str) -> str:
    """(Re)create database ``name`` and return its URL: a test module's private database.

    PostgreSQL is a required test service: unreachable means the test fails, never skips.
    """
    from sqlalchemy.engine import make_url

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def open_test_store(backend: str, tmp_path: Path, pg_database: str) -> Store:
    """A migrated store on SQLite in ``tmp_path`` or on a fresh private PostgreSQL database."""
    if backend == "postgresql":
        return Store.open(
            Settings(data_dir=tmp_path, database_url=fresh_postgres_database(pg_database))
        )
    return Store.open(Settings(data_dir=tmp_path))


def png_chunk(tag: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC, for tests that build PNG files by hand."""
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
