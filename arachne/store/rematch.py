"""Retroactive matching: list entries against every image already hashed, no refetching.

(The matching over the store; queue/rematch.py runs it as jobs on the workers.)

A list imported after a crawl (or changed by an import, a rollback) is matched against the
packed PDQ queries each image kept (matcher/variants.py) and against the images' digests,
and the new matches are recorded exactly as a crawl records them, marked ``retroactive``:
incidents and notices follow as usual.

The work is cut into ranges of image ids, each an rq job on the workers (or run in the
foreground by ``arachne rematch --wait``); progress is kept in Redis per task. A job is
idempotent (a match is unique per sighting and entry), so a job retried after a killed
worker adds nothing twice.

Per range, PDQ matching picks its method by size: a few entries are compared with every
query of the range by numpy (popcount of XOR); many entries query a multi-index built
over the range's queries (the queries outnumber the entries, so indexing them is cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arachne.matcher.index import hex_to_words
from arachne.matcher.kinds import DIGESTS, PDQ
from arachne.matcher.mih import MIHPDQIndex
from arachne.matcher.variants import LABELS, unpack_many
from arachne.store.models import (
    HashChange,
    HashEntry,
    HashList,
    HashListVersion,
    Image,
    Match,
    ReviewItem,
    Sighting,
    utcnow,
)
from arachne.store.records import insert_ignore, suppressed_pairs

RANGE_IMAGES = 100_000
"""Image ids per job: ~30 MB of packed queries, a second or two of work for a big list."""
BRUTE_MAX_ENTRIES = 32
"""Up to this many PDQ entries are compared with every query directly (~10 ms per entry
per 100k images); more build a multi-index over the range's queries."""
_IN_CHUNK = 900
REVIEW_AUTO_MAX = 10_000
"""PDQ entries up to which a rematch also looks for near misses unless told otherwise."""


@dataclass(frozen=True)
class Selection:
    """Which entries to match, against which images."""

    list_name: str | None = None  # one list; None: every list
    version: int | None = None  # only what this version of the list added or changed
    campaign: str | None = None  # only images seen by this campaign
    review: bool | None = None  # near misses too; None: when it is cheap (REVIEW_AUTO_MAX)

    def review_band(self, band: int, pdq_entries: int) -> int:
        """The review band this rematch searches: a band past the threshold makes a
        multi-index search far slower (100k entries x 1M images: 35 s at 31 bits, 450 s
        at 45), so by default only selections of up to REVIEW_AUTO_MAX PDQ entries look
        for near misses; the live path always does."""
        wanted = self.review if self.review is not None else pdq_entries <= REVIEW_AUTO_MAX
        return band if wanted else 0


@dataclass
class Entries:
    pdq_ids: np.ndarray  # (m,) entry ids
    pdq_words: np.ndarray  # (m, 4)
    pdq_thresholds: np.ndarray  # (m,)
    exact: dict[str, list[tuple[int, str]]]  # digest kind -> (entry id, value)

    def __len__(self) -> int:
        return len(self.pdq_ids) + sum(len(v) for v in self.exact.values())


def selected_entries(session: Session, sel: Selection, default_threshold: int) -> Entries:
    """The active entries a selection names, with each PDQ entry's threshold."""
    stmt = (
        select(
            HashEntry.id,
            HashEntry.kind,
            HashEntry.value,
            func.coalesce(HashEntry.threshold, HashList.threshold),
        )
        .join(HashList, HashList.id == HashEntry.list_id)
        .where(HashEntry.deleted_at.is_(None), HashList.deleted_at.is_(None))
    )
    if sel.list_name is not None:
        hash_list = session.scalar(select(HashList).where(HashList.name == sel.list_name))
        if hash_list is None:
            from arachne.store.listversions import UnknownList

            raise UnknownList(f"no list named {sel.list_name!r} (see `arachne lists`)")
        stmt = stmt.where(HashEntry.list_id == hash_list.id)
        if sel.version is not None:
            version_id = session.scalar(
                select(HashListVersion.id).where(
                    HashListVersion.list_id == hash_list.id,
                    HashListVersion.number == sel.version,
                )
            )
            changed = select(HashChange.entry_id).where(HashChange.version_id == version_id)
            stmt = stmt.where((HashEntry.version == sel.version) | HashEntry.id.in_(changed))
    ids: list[int] = []
    hexes: list[str] = []
    thresholds: list[int] = []
    exact: dict[str, list[tuple[int, str]]] = {k.name: [] for k in DIGESTS}
    for entry_id, kind, value, threshold in session.execute(stmt.order_by(HashEntry.id)):
        if kind == PDQ.name:
            ids.append(entry_id)
            hexes.append(value)
            thresholds.append(default_threshold if threshold is None else threshold)
        elif kind in exact:
            exact[kind].append((entry_id, value))
    return Entries(
        np.array(ids, dtype=np.int64),
        hex_to_words(hexes),
        np.array(thresholds, dtype=np.int64),
        exact,
    )


def image_ranges(session: Session, size: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) ranges of image ids covering every stored image."""
    size = size or RANGE_IMAGES
    lo, hi = session.execute(select(func.min(Image.id), func.max(Image.id))).one()
    if lo is None:
        return []
    return [(start, min(start + size, hi + 1)) for start in range(lo, hi + 1, size)]


def near_hits(
    entry_words: np.ndarray, thresholds: np.ndarray, query_words: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entry index, query index, distance) of every pair within the entry's threshold."""
    m, n = len(entry_words), len(query_words)
    if not m or not n:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if m <= BRUTE_MAX_ENTRIES:
        out_e, out_q, out_d = [], [], []
        for i in range(m):
            dist = np.bitwise_count(query_words ^ entry_words[i]).sum(axis=1, dtype=np.int64)
            hit = np.flatnonzero(dist <= thresholds[i])
            out_e.append(np.full(len(hit), i, dtype=np.int64))
            out_q.append(hit)
            out_d.append(dist[hit])
        return np.concatenate(out_e), np.concatenate(out_q), np.concatenate(out_d)
    index = MIHPDQIndex()
    index.add_words(np.arange(n, dtype=np.int64), query_words)
    hexes = [row.astype(">u8").tobytes().hex() for row in entry_words]
    results = index.query(hexes, int(thresholds.max()))
    out = [(i, q, d) for i, hits in enumerate(results) for q, d in hits if d <= thresholds[i]]
    if not out:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    arr = np.array(out, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def match_range(
    session: Session,
    entries: Entries,
    lo: int,
    hi: int,
    *,
    min_quality: int,
    campaign_id: int | None = None,
    with_exact: bool = True,
    review_band: int = 0,
) -> dict[str, int]:
    """Match ``entries`` against images with ids in [lo, hi) and record new matches, and,
    as on the live path, near misses up to ``review_band`` as review items."""
    # (image id, entry id) -> (kind, hash kind, distance, variant): the best per pair, as
    # the live matcher keeps (lowest distance; on a tie the earlier query).
    found: dict[tuple[int, int], tuple[str, str, int, str | None]] = {}
    images = 0
    if len(entries.pdq_ids):
        image_ids, blobs = _stored_queries(session, lo, hi)
        images = len(blobs)
        owner, words, labels = unpack_many(blobs, min_quality)
        thresholds = entries.pdq_thresholds
        radii = np.maximum(thresholds, review_band)
        e_idx, q_idx, dist = near_hits(entries.pdq_words, radii, words)
        order = np.lexsort((labels[q_idx], dist))  # best first: distance, then query order
        for k in order:
            key = (int(image_ids[owner[q_idx[k]]]), int(entries.pdq_ids[e_idx[k]]))
            if key not in found:
                kind = "near" if dist[k] <= thresholds[e_idx[k]] else "review"
                found[key] = (kind, PDQ.name, int(dist[k]), LABELS[labels[q_idx[k]]])
    if with_exact:
        for kind, pairs in entries.exact.items():
            by_value: dict[str, list[int]] = {}
            for entry_id, value in pairs:
                by_value.setdefault(value, []).append(entry_id)
            values = sorted(by_value)
            column = getattr(Image, kind)
            for start in range(0, len(values), _IN_CHUNK):
                for image_id, value in session.execute(
                    select(Image.id, column).where(column.in_(values[start : start + _IN_CHUNK]))
                ):
                    for entry_id in by_value[value]:
                        found[(image_id, entry_id)] = ("exact", kind, 0, None)
    matches, reviews = _record(session, found, campaign_id)
    matched = {i for (i, _), d in found.items() if d[0] != "review"}
    return {"images": images, "matched_images": len(matched), "matches": matches,
            "review_items": reviews}  # fmt: skip


def _stored_queries(session: Session, lo: int, hi: int) -> tuple[np.ndarray, list[bytes]]:
    """Ids and packed queries of the images in [lo, hi). Straight through the driver: for
    a million rows, SQLAlchemy's per-row result processing cost more than the matching."""
    connection = session.connection()
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"SELECT id, pdq_queries FROM {Image.__tablename__} WHERE id >= {marker} "
            f"AND id < {marker} AND pdq_queries IS NOT NULL",
            (lo, hi),
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return np.zeros(0, dtype=np.int64), []
    ids, blobs = zip(*rows, strict=True)
    if type(blobs[0]) is not bytes:  # PostgreSQL drivers may hand out memoryviews
        blobs = tuple(bytes(b) for b in blobs)
    return np.array(ids, dtype=np.int64), list(blobs)


def _record(
    session: Session,
    found: dict[tuple[int, int], tuple[str, str, int, str | None]],
    campaign_id: int | None,
) -> tuple[int, int]:
    """Matches (and review items) for every sighting of the images; (new matches, new
    review items)."""
    if not found:
        return 0, 0
    # Pairs an analyst rejected (review.py) stay unmatched, as on the live path.
    image_ids = sorted({image_id for image_id, _ in found})
    sha_of: dict[int, str] = {}
    for start in range(0, len(image_ids), _IN_CHUNK):
        sha_of.update(
            session.execute(
                select(Image.id, Image.sha256).where(
                    Image.id.in_(image_ids[start : start + _IN_CHUNK])
                )
            ).all()
        )
    suppressed = suppressed_pairs(session, list(sha_of.values()))
    by_image: dict[int, list[tuple[int, tuple[str, str, int, str | None]]]] = {}
    for (image_id, entry_id), decision in found.items():
        if (sha_of.get(image_id), entry_id) not in suppressed:
            by_image.setdefault(image_id, []).append((entry_id, decision))
    ids = sorted(by_image)
    now = utcnow()
    matches: list[dict[str, Any]] = []
    reviews: list[dict[str, Any]] = []
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(Sighting.id, Sighting.campaign_id, Sighting.image_id).where(
            Sighting.image_id.in_(ids[start : start + _IN_CHUNK])
        )
        if campaign_id is not None:
            stmt = stmt.where(Sighting.campaign_id == campaign_id)
        for sighting_id, cid, image_id in session.execute(stmt):
            for entry_id, (kind, hash_kind, distance, variant) in by_image[image_id]:
                row = {"campaign_id": cid, "sighting_id": sighting_id, "entry_id": entry_id,
                       "distance": distance, "variant": variant, "created_at": now}  # fmt: skip
                if kind == "review":
                    reviews.append({**row, "state": "pending"})
                else:
                    matches.append(
                        {**row, "kind": kind, "hash_kind": hash_kind, "retroactive": True}
                    )
    return _insert_new(session, Match, matches), _insert_new(session, ReviewItem, reviews)


def _insert_new(
    session: Session, model: type[Match] | type[ReviewItem], rows: list[dict[str, Any]]
) -> int:
    """Insert the rows not there yet; how many were new."""
    rows.sort(key=lambda r: (r["sighting_id"], r["entry_id"]))  # one lock order
    table = model.__table__
    insert = insert_ignore(session, table).returning(table.c.id)  # type: ignore[arg-type]
    return sum(
        len(session.execute(insert, rows[start : start + 5_000]).all())
        for start in range(0, len(rows), 5_000)
    )
