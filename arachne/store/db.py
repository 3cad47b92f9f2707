"""Engine and sessions from settings; schema upgrades through Alembic."""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from arachne.errors import StoreBusy
from arachne.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every Arachne process.
_PG_MIGRATION_LOCK = 0x417261636E65


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the dashboard read while workers write; busy_timeout makes the
            # workers queue for the write lock instead of failing.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def engine_from_settings(settings: Settings) -> Engine:
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.db_url)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call from many processes at once."""
    with _migration_lock(engine), engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
        return
    db_path = engine.url.database
    if engine.dialect.name == "sqlite" and db_path and db_path != ":memory:":
        with open(f"{db_path}.migrate-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    yield


class Store:
    """The engine plus a session factory; one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> Store:
        store = cls(engine_from_settings(settings))
        if migrate:
            upgrade(store.engine)
        return store

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session whose queries all see one state of the store: a worker
        loading the index across several queries must not see half of an import committed
        between two of them. PostgreSQL: REPEATABLE READ; SQLite: one explicit read
        transaction (the driver would run each SELECT on its own)."""
        with self._sessions() as session:
            if self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            else:
                session.connection().exec_driver_sql("BEGIN")
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def exclusive(self, name: str, *, wait: bool = True, timeout: float = 600.0) -> Iterator[bool]:
        """Hold a lock named ``name`` across every process using this store; yields whether
        it was acquired (``wait=False`` gives up at once when someone else holds it).

        PostgreSQL: a session advisory lock; SQLite: an flock beside the database file.
        Both are released by the operating system or the server when the holder dies,
        so a crashed sender never blocks the next one.
        """
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")
            with self.engine.connect() as conn:

                def try_pg() -> bool:
                    got = bool(
                        conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                    )
                    conn.commit()
                    return got

                held = _acquire(try_pg, name, wait, timeout)
                try:
                    yield held
                finally:
                    if held:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            return
        db_path = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not db_path or db_path == ":memory:":
            yield True
            return
        with open(f"{db_path}.{name}-lock", "w") as lock:

            def try_flock() -> bool:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            held = _acquire(try_flock, name, wait, timeout)
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def dispose(self) -> None:
        self.engine.dispose()


def _acquire(attempt: Callable[[], bool], name: str, wait: bool, timeout: float) -> bool:
    """Try ``attempt`` until it succeeds; without ``wait`` once. Waiting past ``timeout`` is
    StoreBusy: a caller that chose to wait must not go on without the lock."""
    deadline = time.monotonic() + timeout
    while not attempt():
        if not wait:
            return False
        if time.monotonic() > deadline:
            raise StoreBusy(f"another process holds the {name!r} lock")
        time.sleep(0.2)
    return True
