"""Known-hash lists in the store: import (with updates and retractions), summaries, streaming.

An import parses the whole file first, so a malformed file writes nothing. The writes then
happen in one transaction, in bulk (COPY on PostgreSQL, executemany elsewhere) rather than
one ORM object per row: a list of a million hashes must import in seconds, not hours.

Re-importing a list under the same name is how plain lists are updated. For snapshot
formats (text, CSV, VICS) the file *is* the list: entries it lacks are retracted
(``deleted_at`` set, the row kept so past matches still point at it), entries it brings
back are restored. A delta file (NCMEC) only adds, updates and retracts what it names:
its removals by hash, or by the list's item id (``external_id``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arachne.matcher.lists import parse_list
from arachne.matcher.lists.base import ParsedList, check_threshold
from arachne.store.db import Store
from arachne.store.listversions import (
    CLI_ACTOR,
    ListChangeRefused,
    State,
    finish_version,
    log_changes,
    new_version,
    set_deleted_at,
    set_labels,
)
from arachne.store.models import HashEntry, HashList, utcnow

_ENTRIES = HashEntry.__table__
# Rows per INSERT executemany batch: well under SQLite's
# 32,766-variable limit and PostgreSQL's 65,535 parameters, big enough to amortise trips.
_INSERT_CHUNK = 10_000
_IMPORT_LOCK = 0x4C697374  # PostgreSQL advisory lock key shared by every list import
_STREAM_CHUNK = 10_000


@dataclass(frozen=True)
class ImportReport:
    """What an import changed.

    ``added`` counts entries that became active (new ones and restored retracted ones);
    ``retracted`` those that stopped being active; ``unchanged`` those active before and
    after (their category, id or threshold may still have been updated). ``by_kind`` is
    the list's active entries per hash kind after the import. ``skipped`` counts hashes in
    the file that cannot be matched (PhotoDNA, video hashes), by name; none were stored.
    """

    name: str
    format: str
    added: int
    retracted: int
    unchanged: int
    by_kind: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)
    updated: int = 0  # active before and after, with a new category, id or threshold
    version: int = 0
    duplicates: int = 0  # repeats in the file, collapsed (the first wins)
    conflicts: int = 0  # of those, repeats that disagreed with the first

    @property
    def active(self) -> int:
        return sum(self.by_kind.values())


# A stored entry as the diff needs it: (id, retracted?, (category, external_id, threshold)).
# Plain tuples, not objects: a million of them are built on every re-import.
_Existing = tuple[int, bool, tuple[str | None, str | None, int | None]]


def import_list(
    store: Store,
    name: str,
    path: Path,
    *,
    format: str | None = None,
    kind: str | None = None,
    threshold: int | None = None,
    source: str | None = None,
    categories: Iterable[str] | None = None,
    force: bool = False,
    max_retract_share: float = 0.2,
    actor: str = CLI_ACTOR,
) -> ImportReport:
    """Import (or update) list ``name`` from ``path``; see the module docstring.

    ``categories``, when given, keeps only entries whose category is one of them (a VICS
    export also carries non-pertinent categories that must never trigger a notice).

    ``threshold`` is the list's PDQ distance (None keeps the stored one, or the global
    default for a new list). ``source`` says where the list came from (default: the path).
    Raises ListFormatError, before writing anything, when the file is malformed.

    Unless ``force``, an import is refused (ListChangeRefused, nothing written) when the
    file holds no entries at all, or when it would retract more than ``max_retract_share``
    of the list's active entries: an empty or truncated vendor file must not silently
    empty a list. Every import is the list's next version (store/listversions.py).
    """
    if threshold is not None:
        check_threshold(threshold)
    path = Path(path)
    parsed = parse_list(path, format=format, kind=kind)
    if categories is not None:
        wanted = {c.strip().lower() for c in categories}
        parsed = dataclasses.replace(
            parsed,
            entries=[e for e in parsed.entries if (e.category or "").lower() in wanted],
        )
    if not force and not (parsed.entries or parsed.retractions or parsed.retracted_ids):
        raise ListChangeRefused(
            f"{path} holds no entries Arachne can store"
            + (" of the chosen categories" if categories is not None else "")
            + f"; list {name!r} is unchanged (use --force to import it anyway)"
        )
    digest = _sha256(path)
    now = utcnow()
    with store.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One import at a time: ids then commit in order, which the workers' delta
            # refresh ("everything above the last id I saw") relies on.
            session.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK)))
        hash_list = _upsert_list(session, name, parsed.format, threshold, source or str(path), now)
        version = new_version(
            session,
            hash_list,
            "import",
            actor=actor,
            now=now,
            format=parsed.format,
            source=source or str(path),
            source_sha256=digest,
            forced=force,
        )
        plan = _plan(session, hash_list.id, parsed)
        # Only a whole-list file retracts by omission; a delta names what it withdraws.
        if not force and parsed.snapshot and plan.retract_ids:
            share = len(plan.retract_ids) / max(1, plan.active_before)
            if share > max_retract_share:
                raise ListChangeRefused(
                    f"importing {path} would retract {len(plan.retract_ids)} of the "
                    f"{plan.active_before} active entries of list {name!r} ({share:.0%}, more "
                    f"than the {max_retract_share:.0%} allowed): is the file truncated? "
                    "Nothing was changed; use --force if the retraction is intended"
                )
        _write(session, hash_list.id, plan, version.id, version.number, now)
        counts = {
            "added": plan.added,
            "updated": len(plan.metadata),
            "retracted": len(plan.retract_ids),
            "unchanged": plan.unchanged,
            "skipped": dict(parsed.skipped),
            "duplicates": parsed.duplicates,
            "conflicts": parsed.conflicts,
        }
        finish_version(session, hash_list, version, counts)
        by_kind = dict(version.counts["active"])
        number = version.number
    return ImportReport(
        name,
        parsed.format,
        plan.added,
        len(plan.retract_ids),
        plan.unchanged,
        by_kind,
        dict(parsed.skipped),
        updated=len(plan.metadata),
        version=number,
        duplicates=parsed.duplicates,
        conflicts=parsed.conflicts,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _upsert_list(
    session: Session,
    name: str,
    format: str,
    threshold: int | None,
    source: str,
    now: datetime,
) -> HashList:
    # FOR UPDATE (PostgreSQL) makes a second import of the same list wait for this one
    # instead of both computing a diff against the same old state.
    hash_list = session.scalar(select(HashList).where(HashList.name == name).with_for_update())
    if hash_list is None:
        hash_list = HashList(
            name=name,
            format=format,
            source=source,
            threshold=threshold,
            imported_at=now,
            updated_at=now,
        )
        session.add(hash_list)
    else:
        hash_list.format = format
        hash_list.source = source
        hash_list.updated_at = now
        hash_list.deleted_at = None  # importing a deleted list's name brings it back
        if threshold is not None:
            hash_list.threshold = threshold
    session.flush()
    return hash_list


def _load_existing(session: Session, list_id: int) -> dict[tuple[str, str], _Existing]:
    rows = session.execute(
        select(
            _ENTRIES.c.id,
            _ENTRIES.c.kind,
            _ENTRIES.c.value,
            _ENTRIES.c.category,
            _ENTRIES.c.external_id,
            _ENTRIES.c.threshold,
            _ENTRIES.c.deleted_at.is_not(None),
        )
        .where(_ENTRIES.c.list_id == list_id)
        .execution_options(yield_per=_STREAM_CHUNK)
    )
    return {
        (kind, value): (id_, bool(deleted), (category, external_id, threshold))
        for id_, kind, value, category, external_id, threshold, deleted in rows
    }


@dataclass
class _Plan:
    """What an import changes, computed before anything is written (so it can be refused)."""

    new_rows: list[tuple[Any, ...]]
    restore_ids: list[int]
    retract_ids: list[int]
    metadata: list[dict[str, Any]]
    befores: dict[int, State]  # each changed entry's state before the import
    unchanged: int
    active_before: int

    @property
    def added(self) -> int:
        return len(self.new_rows) + len(self.restore_ids)


def _plan(session: Session, list_id: int, parsed: ParsedList) -> _Plan:
    """Diff the parsed file against the stored list."""
    # Matched entries are popped, so what is left afterwards is what the file lacks.
    existing = _load_existing(session, list_id)
    active_before = sum(1 for _id, deleted, _meta in existing.values() if not deleted)
    # A delta file that both lists and retracts a hash (or an item id) means it is gone:
    # retraction wins.
    withdrawn = {entry.key for entry in parsed.retractions}
    withdrawn_ids = set(parsed.retracted_ids)
    entries = parsed.entries
    if withdrawn or withdrawn_ids:
        entries = [
            e for e in entries if e.key not in withdrawn and e.external_id not in withdrawn_ids
        ]
    new_rows: list[tuple[Any, ...]] = []
    restore_ids: list[int] = []
    metadata: list[dict[str, Any]] = []
    befores: dict[int, State] = {}
    unchanged = 0
    for entry in entries:
        meta = (entry.category, entry.external_id, entry.threshold)
        old = existing.pop((entry.kind, entry.value), None)
        if old is None:
            new_rows.append((list_id, entry.kind, entry.value, *meta))
            continue
        entry_id, deleted, old_meta = old
        if deleted:
            restore_ids.append(entry_id)
            befores[entry_id] = (True, old_meta)
        else:
            unchanged += 1
        if old_meta != meta:
            befores[entry_id] = (deleted, old_meta)
            metadata.append(
                {"_id": entry_id, "category": meta[0], "external_id": meta[1], "threshold": meta[2]}
            )

    if parsed.snapshot:
        gone = list(existing.values())
    else:
        gone = [old for key in withdrawn if (old := existing.get(key)) is not None]
        # Entries the file still lists were popped above, so a hash that a surviving item
        # also carries stays active even if its stored id is the withdrawn one.
        if withdrawn_ids:
            gone += [old for old in existing.values() if old[2][1] in withdrawn_ids]
    # One id per entry: a hash may be withdrawn both by value and by item id.
    retract_ids = list({entry_id: None for entry_id, deleted, _meta in gone if not deleted})
    for entry_id, _deleted, meta in gone:
        if entry_id in retract_ids:
            befores[entry_id] = (False, meta)
    return _Plan(new_rows, restore_ids, retract_ids, metadata, befores, unchanged, active_before)


def _write(
    session: Session, list_id: int, plan: _Plan, version_id: int, number: int, now: datetime
) -> None:
    added_at = _db_value(session, _ENTRIES.c.added_at, now)
    _insert_rows(session, [(*row, added_at, number) for row in plan.new_rows])
    set_labels(session, plan.metadata)
    set_deleted_at(session, plan.restore_ids, None)
    set_deleted_at(session, plan.retract_ids, now)
    log_changes(session, version_id, plan.befores.items(), now)


_INSERT_COLUMNS = (
    "list_id",
    "kind",
    "value",
    "category",
    "external_id",
    "threshold",
    "added_at",
    "version",
)


def _db_value(session: Session, column: Any, value: Any) -> Any:
    """``value`` as the driver wants it for ``column`` (SQLite stores datetimes as text)."""
    dialect = session.get_bind().dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(value) if process is not None else value


def _insert_rows(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Insert entry rows straight through the driver: COPY on PostgreSQL, else executemany.

    ``session.execute(insert(...), dicts)`` costs SQLAlchemy a per-row, per-column
    parameter pass that was a third of a million-row SQLite import; the values here are
    already in the driver's types (see ``_db_value``), so that pass buys nothing. On
    PostgreSQL, COPY is several times faster than even pipelined executemany.
    """
    if not rows:
        return
    # In index order, B-tree inserts touch neighbouring pages instead of random ones: at a
    # million rows on SQLite that made the insert ~5x faster than file order.
    rows.sort(key=itemgetter(1, 2))
    connection = session.connection()
    columns = ", ".join(_INSERT_COLUMNS)
    if connection.dialect.driver == "psycopg":
        # The session's own DBAPI connection, so the COPY is inside the import's transaction.
        raw = connection.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {_ENTRIES.name} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {_ENTRIES.name} ({columns}) "
        f"VALUES ({', '.join([marker] * len(_INSERT_COLUMNS))})"
    )
    for chunk in _chunks(rows, _INSERT_CHUNK):
        connection.exec_driver_sql(sql, list(chunk))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def list_summaries(store: Store) -> list[dict[str, Any]]:
    """One dict per list, by name: metadata and counts, never a hash value."""
    with store.session() as session:
        lists = session.scalars(
            select(HashList).where(HashList.deleted_at.is_(None)).order_by(HashList.name)
        ).all()
        active: dict[int, dict[str, int]] = {}
        for list_id, kind, count in session.execute(
            select(_ENTRIES.c.list_id, _ENTRIES.c.kind, func.count())
            .where(_ENTRIES.c.deleted_at.is_(None))
            .group_by(_ENTRIES.c.list_id, _ENTRIES.c.kind)
        ):
            active.setdefault(list_id, {})[kind] = int(count)
        retracted = dict(
            session.execute(
                select(_ENTRIES.c.list_id, func.count())
                .where(_ENTRIES.c.deleted_at.is_not(None))
                .group_by(_ENTRIES.c.list_id)
            ).all()
        )
        return [
            {
                "name": hl.name,
                "format": hl.format,
                "source": hl.source,
                "threshold": hl.threshold,
                "imported_at": hl.imported_at.isoformat(),
                "updated_at": hl.updated_at.isoformat(),
                "active": dict(sorted(active.get(hl.id, {}).items())),
                "active_total": sum(active.get(hl.id, {}).values()),
                "retracted": int(retracted.get(hl.id, 0)),
            }
            for hl in lists
        ]


_ID_CHUNK = 500
"""Entry ids per ``IN (...)`` when asking for given entries."""


def active_entries(
    session: Session,
    kinds: Iterable[str] | None = None,
    min_id: int | None = None,
    ids: Iterable[int] | None = None,
) -> Iterator[tuple[int, int, str, str, int | None]]:
    """Stream ``(entry_id, list_id, kind, value, threshold)`` for every active entry.

    ``threshold`` is the entry's own, else its list's, else None (the global default).
    Rows arrive in id order, in batches, so a matcher can build an index over millions of
    entries without holding ORM objects. ``kinds`` restricts to those hash kinds; ``ids``
    to those entries (asked in chunks, so any number of ids stays within SQL's limits).
    """
    stmt = (
        select(
            _ENTRIES.c.id,
            _ENTRIES.c.list_id,
            _ENTRIES.c.kind,
            _ENTRIES.c.value,
            func.coalesce(_ENTRIES.c.threshold, HashList.threshold),
        )
        .join(HashList, HashList.id == _ENTRIES.c.list_id)
        .where(_ENTRIES.c.deleted_at.is_(None))
        .order_by(_ENTRIES.c.id)
        .execution_options(yield_per=_STREAM_CHUNK)
    )
    if kinds is not None:
        stmt = stmt.where(_ENTRIES.c.kind.in_(list(kinds)))
    if min_id is not None:  # only entries added since a worker last loaded (see jobs.py)
        stmt = stmt.where(_ENTRIES.c.id >= min_id)
    if ids is None:
        yield from map(tuple, session.execute(stmt))
        return
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), _ID_CHUNK):
        chunk = wanted[start : start + _ID_CHUNK]
        yield from map(tuple, session.execute(stmt.where(_ENTRIES.c.id.in_(chunk))))
