"""The analysts' side (issue 9 §3): near misses are questions, decisions are recorded.

A near miss (a PDQ distance in the review band above the threshold) waits as a pending
``ReviewItem``. Confirmed, it becomes a match, so incidents and notices follow, and the
image's PDQ can join a local list so that copies of it match from then on. Rejected, the
(image, entry) pair is suppressed: neither a match nor a review item is recorded for it
again. Every decision goes to the audit log with who and when. Never the image.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import ArachneError
from arachne.store.models import (
    AuditLog,
    HashEntry,
    HashList,
    Image,
    Match,
    ReviewItem,
    Sighting,
    Suppression,
    utcnow,
)
from arachne.store.records import insert_ignore
from arachne.store.summary import get_campaign

PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"


class ReviewError(ArachneError):
    """No such review item, or it was already decided."""


def review_items(
    session: Session, campaign: str | None = None, state: str | None = PENDING
) -> list[dict[str, Any]]:
    """Review items (pending by default), oldest first, as the CLI and dashboard show them."""
    stmt = (
        select(ReviewItem, Sighting, HashEntry, HashList, Image)
        .join(Sighting, Sighting.id == ReviewItem.sighting_id)
        .join(HashEntry, HashEntry.id == ReviewItem.entry_id)
        .join(HashList, HashList.id == HashEntry.list_id)
        .outerjoin(Image, Image.id == Sighting.image_id)
        .order_by(ReviewItem.id)
    )
    if campaign is not None:
        stmt = stmt.where(ReviewItem.campaign_id == get_campaign(session, campaign).id)
    if state is not None:
        stmt = stmt.where(ReviewItem.state == state)
    return [
        {
            "id": item.id,
            "state": item.state,
            "url": sighting.image_url,
            "page": sighting.page_url,
            "host": sighting.host,
            "list": hash_list.name,
            "entry_id": entry.id,
            "external_id": entry.external_id,
            "category": entry.category,
            "distance": item.distance,
            "threshold": entry.threshold if entry.threshold is not None else hash_list.threshold,
            "variant": item.variant,
            "pdq_quality": image.pdq_quality if image else None,
            "created_at": item.created_at.isoformat(),
            "decided_by": item.decided_by,
            "decided_at": item.decided_at.isoformat() if item.decided_at else None,
            "note": item.note,
        }
        for item, sighting, entry, hash_list, image in session.execute(stmt)
    ]


def decide(
    session: Session,
    item_id: int,
    verdict: str,
    *,
    actor: str,
    note: str | None = None,
) -> tuple[ReviewItem, str | None]:
    """Confirm or reject review item ``item_id``; (the item, the image's PDQ for a list)."""
    if verdict not in (CONFIRMED, REJECTED):
        raise ReviewError(f"a decision is {CONFIRMED!r} or {REJECTED!r}, not {verdict!r}")
    item = session.get(ReviewItem, item_id, with_for_update=True)
    if item is None:
        raise ReviewError(f"no review item {item_id} (see `arachne review list`)")
    if item.state != PENDING:
        raise ReviewError(
            f"review item {item_id} was already {item.state} by {item.decided_by} "
            f"at {item.decided_at:%Y-%m-%d %H:%M}"
        )
    now = utcnow()
    sighting = session.get(Sighting, item.sighting_id)
    image = session.get(Image, sighting.image_id) if sighting and sighting.image_id else None
    if verdict == CONFIRMED:
        session.execute(
            insert_ignore(session, Match.__table__),
            [
                {
                    "campaign_id": item.campaign_id,
                    "sighting_id": item.sighting_id,
                    "entry_id": item.entry_id,
                    "kind": "near",
                    "hash_kind": "pdq",
                    "distance": item.distance,
                    "variant": item.variant,
                    "created_at": now,
                    "retroactive": False,
                }
            ],
        )
    elif image is not None:
        session.execute(
            insert_ignore(session, Suppression.__table__),
            [{"image_sha256": image.sha256, "entry_id": item.entry_id,
              "review_id": item.id, "created_at": now}],
        )  # fmt: skip
    item.state, item.decided_by, item.decided_at, item.note = verdict, actor, now, note
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=f"review.{'confirm' if verdict == CONFIRMED else 'reject'}",
            detail={
                "review_id": item.id,
                "url": sighting.image_url if sighting else None,
                "entry_id": item.entry_id,
                "distance": item.distance,
                "note": note,
            },
        )
    )
    session.flush()
    return item, image.pdq if image is not None else None
