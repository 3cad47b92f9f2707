"""`arachne explain`: why a URL matched, in the store's own words (never the image)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import ArachneError
from arachne.matcher.hashing import TRIM_PREFIX, UPSCALED_VARIANT
from arachne.store.models import HashEntry, HashList, Image, Match, Sighting
from arachne.store.summary import get_campaign
from arachne.urls import url_key

_TRANSFORMS = {
    "original": "the image as served",
    "rot90": "the image rotated 90°",
    "rot180": "the image rotated 180°",
    "rot270": "the image rotated 270°",
    "flipx": "the image mirrored left to right",
    "flipy": "the image flipped top to bottom",
    "flip_plus1": "the image mirrored on its main diagonal",
    "flip_minus1": "the image mirrored on its other diagonal",
}


class NotMatched(ArachneError):
    """The URL was not seen by the campaign, or nothing matched it."""


def describe_variant(variant: str | None) -> str | None:
    """What a PDQ query variant label means, for a reader."""
    if variant is None:
        return None
    if variant == UPSCALED_VARIANT:
        return "the image as if upscaled 2× (a downscaled copy of a finely textured original)"
    if variant.startswith(TRIM_PREFIX):
        inner = _TRANSFORMS.get(variant[len(TRIM_PREFIX) :], variant)
        return f"the content inside its uniform borders: {inner}"
    return _TRANSFORMS.get(variant, variant)


def explain(session: Session, campaign: str, url: str, default_threshold: int) -> dict[str, Any]:
    """The sighting of ``url`` in ``campaign``, its image's figures and every match."""
    cid = get_campaign(session, campaign).id
    sighting = session.scalar(
        select(Sighting).where(Sighting.campaign_id == cid, Sighting.url_key == url_key(url))
    )
    if sighting is None:
        raise NotMatched(f"campaign {campaign!r} has not seen {url}")
    image = session.get(Image, sighting.image_id) if sighting.image_id else None
    rows = session.execute(
        select(Match, HashEntry, HashList)
        .join(HashEntry, HashEntry.id == Match.entry_id)
        .join(HashList, HashList.id == HashEntry.list_id)
        .where(Match.sighting_id == sighting.id)
        .order_by(Match.kind, Match.distance, Match.id)
    ).all()
    if not rows:
        raise NotMatched(f"{url} was seen by campaign {campaign!r} but matched nothing")
    matches = []
    for match, entry, hash_list in rows:
        threshold = entry.threshold if entry.threshold is not None else hash_list.threshold
        matches.append(
            {
                "list": hash_list.name,
                "entry_id": entry.id,
                "external_id": entry.external_id,
                "category": entry.category,
                "hash_kind": match.hash_kind,
                "kind": match.kind,
                "distance": match.distance,
                "threshold": (threshold if threshold is not None else default_threshold)
                if match.hash_kind == "pdq"
                else None,
                "variant": match.variant,
                "variant_meaning": describe_variant(match.variant),
                "retroactive": bool(match.retroactive),
                "entry_retracted": entry.deleted_at is not None,
                "matched_at": match.created_at.isoformat(),
            }
        )
    return {
        "url": sighting.image_url,
        "page": sighting.page_url,
        "host": sighting.host,
        "server_ip": sighting.server_ip,
        "http_status": sighting.http_status,
        "seen_at": sighting.fetched_at.isoformat(),
        "run": sighting.run,
        "image": None
        if image is None
        else {
            "sha256": image.sha256,
            "md5": image.md5,
            "pdq": image.pdq,
            "pdq_quality": image.pdq_quality,
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "bytes": image.size,
            "first_seen_at": image.first_seen_at.isoformat(),
        },
        "matches": matches,
    }
