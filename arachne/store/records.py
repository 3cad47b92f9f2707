"""Recording a worker batch: images, sightings and matches, idempotently.

rq delivers at least once, so a batch may be recorded twice: every insert here is
"on conflict do nothing" against a unique key (images.sha256, sightings (campaign, URL),
matches (sighting, entry)), and a re-run changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arachne.matcher import variants
from arachne.matcher.hashing import ImageHashes
from arachne.matcher.match import MatchDecision
from arachne.store.models import Image, Match, ReviewItem, Sighting, Suppression, utcnow
from arachne.urls import url_key


@dataclass
class ImageOutcome:
    """Everything learned about one image URL in a batch (never its bytes)."""

    image_url: str
    page_url: str | None
    host: str
    http_status: int | None = None
    server_ip: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hashes: ImageHashes | None = None
    error: str | None = None
    error_detail: str | None = None
    decisions: list[MatchDecision] = field(default_factory=list)
    near_misses: list[MatchDecision] = field(default_factory=list)  # for review, not notices


def insert_ignore(session: Session, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def record_outcomes(
    session: Session, campaign_id: int, outcomes: Sequence[ImageOutcome], run: int = 1
) -> frozenset[str]:
    """Record a batch of run ``run``; returns the image URLs recorded now (not by an earlier
    delivery). A URL an earlier run recorded is updated with what this run found."""
    if not outcomes:
        return frozenset()
    image_ids = _upsert_images(session, [o.hashes for o in outcomes if o.hashes])

    keys = {url_key(o.image_url): o for o in outcomes}
    existing = dict(
        session.execute(
            select(Sighting.url_key, Sighting.run).where(
                Sighting.campaign_id == campaign_id, Sighting.url_key.in_(list(keys))
            )
        ).all()
    )
    now = utcnow()

    def values(key: str, o: ImageOutcome) -> dict[str, Any]:
        return {
            "image_url": o.image_url,
            "page_url": o.page_url,
            "host": o.host,
            "image_id": image_ids.get(o.hashes.sha256) if o.hashes else None,
            "fetched_at": now,
            "http_status": o.http_status,
            "server_ip": o.server_ip,
            "content_type": (o.content_type or "")[:200] or None,
            "headers": o.headers,
            "error": o.error,
            "error_detail": (o.error_detail or "")[:2000] or None,
            "run": run,
        }

    rows = [
        {"campaign_id": campaign_id, "url_key": key, **values(key, o)}
        for key, o in keys.items()
        if key not in existing
    ]
    if rows:
        rows.sort(key=lambda r: r["url_key"])  # one lock order for concurrent workers
        session.execute(insert_ignore(session, Sighting.__table__), rows)
    recorded = {r["url_key"] for r in rows}
    # Seen by an earlier run: this run's fetch replaces it (guarded, so a second delivery
    # of this batch, or a slower one of the older run, changes nothing).
    for key in sorted(k for k, r in existing.items() if r is None or r < run):
        result = session.execute(
            update(Sighting)
            .where(
                Sighting.campaign_id == campaign_id,
                Sighting.url_key == key,
                or_(Sighting.run.is_(None), Sighting.run < run),
            )
            .values(**values(key, keys[key]))
        )
        if result.rowcount:  # type: ignore[attr-defined]
            recorded.add(key)
    sighting_ids = dict(
        session.execute(
            select(Sighting.url_key, Sighting.id).where(
                Sighting.campaign_id == campaign_id, Sighting.url_key.in_(list(keys))
            )
        ).all()
    )

    fresh = [(key, o) for key, o in keys.items() if key in recorded]
    suppressed = suppressed_pairs(
        session, [o.hashes.sha256 for _, o in fresh if o.hashes and (o.decisions or o.near_misses)]
    )

    def rows_of(matches: bool) -> list[dict[str, Any]]:
        rows = [
            {
                "campaign_id": campaign_id,
                "sighting_id": sighting_ids[key],
                "entry_id": d.entry_id,
                "distance": d.distance,
                "variant": d.variant,
                "created_at": now,
                **({"kind": d.kind, "hash_kind": d.hash_kind} if matches else {"state": "pending"}),
            }
            for key, o in fresh
            for d in (o.decisions if matches else o.near_misses)
            if not (o.hashes and (o.hashes.sha256, d.entry_id) in suppressed)
        ]
        rows.sort(key=lambda r: (r["sighting_id"], r["entry_id"]))  # one lock order
        return rows

    if match_rows := rows_of(matches=True):
        session.execute(insert_ignore(session, Match.__table__), match_rows)
    if review_rows := rows_of(matches=False):  # near misses: questions, never notices
        session.execute(insert_ignore(session, ReviewItem.__table__), review_rows)
    return frozenset(keys[key].image_url for key in recorded)


def suppressed_pairs(session: Session, sha256s: Sequence[str]) -> set[tuple[str, int]]:
    """The (image SHA-256, entry) pairs among these images that analysts rejected."""
    wanted = sorted(set(sha256s))
    pairs: set[tuple[str, int]] = set()
    for start in range(0, len(wanted), 900):
        pairs.update(
            session.execute(
                select(Suppression.image_sha256, Suppression.entry_id).where(
                    Suppression.image_sha256.in_(wanted[start : start + 900])
                )
            ).all()
        )
    return pairs


def _upsert_images(session: Session, hashes: Sequence[ImageHashes]) -> dict[str, int]:
    by_sha = {h.sha256: h for h in hashes}
    if not by_sha:
        return {}
    lacking: list[str] = []  # stored before images kept their queries: filled in now
    before = set()
    for sha, has_queries in session.execute(
        select(Image.sha256, Image.pdq_queries.is_not(None)).where(Image.sha256.in_(list(by_sha)))
    ):
        before.add(sha)
        if not has_queries:
            lacking.append(sha)
    fill = [
        {"_sha": sha, "pdq_queries": packed}
        for sha in sorted(lacking)
        if (packed := variants.pack(by_sha[sha])) is not None
    ]
    if fill:
        table = Image.__table__
        session.execute(
            update(table)
            .where(table.c.sha256 == bindparam("_sha"), table.c.pdq_queries.is_(None))
            .values(pdq_queries=bindparam("pdq_queries")),
            fill,
        )
    rows = [
        {
            "sha256": h.sha256,
            "md5": h.md5,
            "sha1": h.sha1,
            "pdq": h.pdq,
            "pdq_quality": h.pdq_quality,
            "width": h.width,
            "height": h.height,
            "format": h.format,
            "size": h.size,
            "first_seen_at": utcnow(),
            "pdq_queries": variants.pack(h),
        }
        for sha, h in by_sha.items()
        if sha not in before
    ]
    if rows:
        rows.sort(key=lambda r: r["sha256"])  # one lock order: no deadlock on PostgreSQL
        session.execute(insert_ignore(session, Image.__table__), rows)
    ids = dict(
        session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(list(by_sha)))).all()
    )
    return ids
