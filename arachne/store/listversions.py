"""Versions of known-hash lists: history, rollback, retraction by id, deletion.

Every change to a list is a numbered ``HashListVersion`` with its counts. Entries remember
the version that first added them, and every change to an existing entry is a
``HashChange`` row holding the entry's state just before it. That is enough to rebuild the
state at any version without storing whole snapshots: an entry added after version V did
not exist at V, and an entry changed after V was, at V, as it was just before its first
change after V. A rollback writes that state as a new version (so it can be undone too).

Rows are never deleted: retracted entries stay so that past matches keep their evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from arachne.errors import ArachneError
from arachne.store.db import Store
from arachne.store.models import AuditLog, HashChange, HashEntry, HashList, HashListVersion, utcnow

_ENTRIES = HashEntry.__table__
_ID_CHUNK = 900
_WRITE_CHUNK = 10_000  # rows per executemany
CLI_ACTOR = "cli"

# An entry's state as a rollback restores it: (retracted?, (category, external_id, threshold)).
State = tuple[bool, tuple[str | None, str | None, int | None]]


class UnknownList(ArachneError):
    """No (undeleted) list has that name."""


class ListChangeRefused(ArachneError):
    """A change that would lose more than it should (an empty or truncated file, an
    unknown version): refused, nothing written."""


@dataclass(frozen=True)
class ChangeReport:
    name: str
    version: int
    action: str
    counts: dict[str, Any]


def get_list(session: Session, name: str, *, lock: bool = True) -> HashList:
    stmt = select(HashList).where(HashList.name == name, HashList.deleted_at.is_(None))
    hash_list = session.scalar(stmt.with_for_update() if lock else stmt)
    if hash_list is None:
        raise UnknownList(f"no list named {name!r} (see `arachne lists`)")
    return hash_list


def new_version(
    session: Session,
    hash_list: HashList,
    action: str,
    *,
    actor: str = CLI_ACTOR,
    now: datetime | None = None,
    **fields: Any,
) -> HashListVersion:
    """The list's next version (its id is needed for the change rows: flushed)."""
    now = now or utcnow()
    last = session.scalar(
        select(func.max(HashListVersion.number)).where(HashListVersion.list_id == hash_list.id)
    )
    version = HashListVersion(
        list_id=hash_list.id, number=(last or 0) + 1, at=now, action=action, actor=actor, **fields
    )
    session.add(version)
    hash_list.updated_at = now  # workers see the change and refresh their index
    session.flush()
    return version


def finish_version(
    session: Session, hash_list: HashList, version: HashListVersion, counts: dict[str, Any]
) -> None:
    """Record the counts (with the active entries by kind after the change) and audit it."""
    version.counts = {**counts, "active": active_by_kind(session, hash_list.id)}
    session.add(
        AuditLog(
            at=version.at,
            actor=version.actor or CLI_ACTOR,
            action=f"list.{version.action}",
            detail={"list": hash_list.name, "version": version.number, **version.counts},
        )
    )


def log_changes(
    session: Session,
    version_id: int | None,
    befores: Iterable[tuple[int, State]],
    now: datetime,
) -> None:
    """One ``hash_changes`` row per changed entry, with its state before the change
    (workers replay these rows; a rollback reads the states)."""
    rows = [
        {
            "entry_id": entry_id,
            "at": now,
            "version_id": version_id,
            "was_deleted": deleted,
            "old_category": meta[0],
            "old_external_id": meta[1],
            "old_threshold": meta[2],
        }
        for entry_id, (deleted, meta) in dict(befores).items()
    ]
    for start in range(0, len(rows), _WRITE_CHUNK):
        session.execute(HashChange.__table__.insert(), rows[start : start + _WRITE_CHUNK])


def active_by_kind(session: Session, list_id: int) -> dict[str, int]:
    rows = session.execute(
        select(_ENTRIES.c.kind, func.count())
        .where(_ENTRIES.c.list_id == list_id, _ENTRIES.c.deleted_at.is_(None))
        .group_by(_ENTRIES.c.kind)
    )
    return dict(sorted((kind, int(count)) for kind, count in rows))


def history(store: Store, name: str) -> list[dict[str, Any]]:
    """Every version of list ``name``, oldest first (counts only, never a hash)."""
    with store.session() as session:
        hash_list = get_list(session, name, lock=False)
        versions = session.scalars(
            select(HashListVersion)
            .where(HashListVersion.list_id == hash_list.id)
            .order_by(HashListVersion.number)
        ).all()
        return [
            {
                "version": v.number,
                "at": v.at.isoformat(),
                "action": v.action,
                "actor": v.actor,
                "format": v.format,
                "source": v.source,
                "source_sha256": v.source_sha256,
                "forced": bool(v.forced),
                "note": v.note,
                "counts": v.counts,
            }
            for v in versions
        ]


def _entries(session: Session, list_id: int) -> dict[int, tuple[int, State]]:
    """id → (version that added it, current state) for every entry of the list."""
    rows = session.execute(
        select(
            _ENTRIES.c.id,
            _ENTRIES.c.version,
            _ENTRIES.c.deleted_at.is_not(None),
            _ENTRIES.c.category,
            _ENTRIES.c.external_id,
            _ENTRIES.c.threshold,
        ).where(_ENTRIES.c.list_id == list_id)
    )
    return {
        id_: (version or 1, (bool(deleted), (category, external_id, threshold)))
        for id_, version, deleted, category, external_id, threshold in rows
    }


def _apply_states(
    session: Session,
    version: HashListVersion,
    current: dict[int, tuple[int, State]],
    wanted: dict[int, State],
    now: datetime,
) -> dict[str, int]:
    """Bring the entries in ``wanted`` to their state there; counts of what changed."""
    befores: list[tuple[int, State]] = []
    retract: list[int] = []
    restore: list[int] = []
    relabel: list[dict[str, Any]] = []
    for entry_id, (deleted, meta) in wanted.items():
        _added, now_state = current[entry_id]
        if now_state == (deleted, meta):
            continue
        befores.append((entry_id, now_state))
        if deleted and not now_state[0]:
            retract.append(entry_id)
        elif not deleted and now_state[0]:
            restore.append(entry_id)
        if meta != now_state[1]:
            relabel.append(
                {"_id": entry_id, "category": meta[0], "external_id": meta[1], "threshold": meta[2]}
            )
    set_deleted_at(session, retract, now)
    set_deleted_at(session, restore, None)
    set_labels(session, relabel)
    log_changes(session, version.id, befores, now)
    return {"added": len(restore), "retracted": len(retract), "updated": len(relabel)}


def set_labels(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Entries' category, external id and threshold, by ``_id``, in chunks."""
    for start in range(0, len(rows), _WRITE_CHUNK):
        session.execute(
            update(_ENTRIES)
            .where(_ENTRIES.c.id == bindparam("_id"))
            .values(
                category=bindparam("category"),
                external_id=bindparam("external_id"),
                threshold=bindparam("threshold"),
            ),
            rows[start : start + _WRITE_CHUNK],
        )


def set_deleted_at(session: Session, ids: Sequence[int], value: datetime | None) -> None:
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        session.execute(update(_ENTRIES).where(_ENTRIES.c.id.in_(chunk)).values(deleted_at=value))


def rollback(store: Store, name: str, to: int, *, actor: str = CLI_ACTOR) -> ChangeReport:
    """Bring list ``name`` back to its state at version ``to``, as a new version."""
    now = utcnow()
    with store.session() as session:
        hash_list = get_list(session, name)
        numbers = dict(
            session.execute(
                select(HashListVersion.number, HashListVersion.id).where(
                    HashListVersion.list_id == hash_list.id
                )
            ).all()
        )
        if to not in numbers:
            known = f"1 to {max(numbers)}" if numbers else "none yet"
            raise ListChangeRefused(f"list {name!r} has no version {to} (versions: {known})")
        later = [vid for number, vid in numbers.items() if number > to]
        current = _entries(session, hash_list.id)
        wanted: dict[int, State] = {}
        # Each entry changed after `to`: its state just before its first such change.
        first_change = (
            select(func.min(HashChange.id))
            .where(HashChange.version_id.in_(later))
            .group_by(HashChange.entry_id)
        )
        for entry_id, deleted, category, external_id, threshold in session.execute(
            select(
                HashChange.entry_id,
                HashChange.was_deleted,
                HashChange.old_category,
                HashChange.old_external_id,
                HashChange.old_threshold,
            ).where(HashChange.id.in_(first_change))
        ):
            if entry_id in current:
                wanted[entry_id] = (bool(deleted), (category, external_id, threshold))
        # Entries added after `to` did not exist then: retracted (rows stay for evidence).
        for entry_id, (added, (_deleted, meta)) in current.items():
            if added > to:
                wanted[entry_id] = (True, meta)
        version = new_version(session, hash_list, "rollback", actor=actor, now=now, note=f"to {to}")
        counts = _apply_states(session, version, current, wanted, now)
        finish_version(session, hash_list, version, {**counts, "to": to})
        return ChangeReport(name, version.number, "rollback", version.counts)


def retract_ids(
    store: Store, name: str, external_ids: Sequence[str], *, actor: str = CLI_ACTOR
) -> ChangeReport:
    """Retract the entries of list ``name`` carrying these external (vendor) ids."""
    now = utcnow()
    wanted_ids = set(external_ids)
    with store.session() as session:
        hash_list = get_list(session, name)
        current = _entries(session, hash_list.id)
        found = {meta[1] for _added, (_deleted, meta) in current.values()} & wanted_ids
        unknown = sorted(wanted_ids - found)
        if not found:
            raise ListChangeRefused(
                f"list {name!r} has no entry with id {', '.join(unknown)}; nothing retracted"
            )
        wanted = {
            entry_id: (True, meta)
            for entry_id, (_added, (_deleted, meta)) in current.items()
            if meta[1] in found
        }
        version = new_version(
            session, hash_list, "retract", actor=actor, now=now, note=" ".join(sorted(found))
        )
        counts = _apply_states(session, version, current, wanted, now)
        finish_version(session, hash_list, version, {**counts, "unknown_ids": unknown})
        return ChangeReport(name, version.number, "retract", version.counts)


def delete_list(store: Store, name: str, *, actor: str = CLI_ACTOR) -> ChangeReport:
    """Retract every entry and hide the list. Rows stay (past matches keep their evidence);
    importing the name again brings the list back as its next version."""
    now = utcnow()
    with store.session() as session:
        hash_list = get_list(session, name)
        current = _entries(session, hash_list.id)
        wanted = {entry_id: (True, state[1]) for entry_id, (_a, state) in current.items()}
        version = new_version(session, hash_list, "delete", actor=actor, now=now)
        counts = _apply_states(session, version, current, wanted, now)
        finish_version(session, hash_list, version, counts)
        hash_list.deleted_at = now
        return ChangeReport(name, version.number, "delete", version.counts)


def add_entry(
    session: Session, name: str, kind: str, value: str, *, actor: str, note: str | None = None
) -> HashListVersion | None:
    """Add one hash to list ``name`` (a local list is created if missing) as its next
    version; None when it is already active there."""
    now = utcnow()
    hash_list = session.scalar(select(HashList).where(HashList.name == name).with_for_update())
    if hash_list is None:
        hash_list = HashList(name=name, format="local", source="analyst decisions",
                             imported_at=now, updated_at=now)  # fmt: skip
        session.add(hash_list)
        session.flush()
    hash_list.deleted_at = None
    existing = session.scalar(
        select(HashEntry).where(
            HashEntry.list_id == hash_list.id, HashEntry.kind == kind, HashEntry.value == value
        )
    )
    if existing is not None and existing.deleted_at is None:
        return None
    version = new_version(session, hash_list, "add", actor=actor, now=now, note=note)
    if existing is None:
        session.add(HashEntry(list_id=hash_list.id, kind=kind, value=value, added_at=now,
                              version=version.number))  # fmt: skip
    else:  # retracted before: restored, the change logged for workers and rollbacks
        log_changes(session, version.id, [(existing.id, (True, _meta(existing)))], now)
        existing.deleted_at = None
    session.flush()
    finish_version(session, hash_list, version, {"added": 1, "updated": 0, "retracted": 0})
    return version


def _meta(entry: HashEntry) -> tuple[str | None, str | None, int | None]:
    return entry.category, entry.external_id, entry.threshold
