"""Campaign summaries: the figures the CLI, the demo and the dashboard all show."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from arachne.errors import UnknownCampaign
from arachne.queue import stats as st
from arachne.store.models import (
    Campaign,
    HashEntry,
    HashList,
    Image,
    Match,
    Notice,
    Sighting,
)


def get_campaign(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        raise UnknownCampaign(f"no campaign named {name!r} (see `arachne campaign list`)")
    return campaign


LiveRun = Callable[[int], Mapping[str, int] | None]


def campaign_summary(
    session: Session,
    name: str,
    live: Mapping[str, int] | None = None,
    live_run: LiveRun | None = None,
) -> dict[str, Any]:
    """Store figures (the system of record) merged with live Redis counters.

    ``live`` is the campaign's Redis stats hash (every run); when Redis is gone the snapshot
    saved in ``campaigns.stats`` stands in for it. ``live_run(number)`` gives one run's live
    counters (else the run's stored snapshot is shown).
    """
    from arachne.store.runs import list_runs, run_json

    campaign = get_campaign(session, name)
    live = dict(live) if live else dict(campaign.stats or {})
    cid = campaign.id

    def count(stmt: Any) -> int:
        return int(session.scalar(stmt) or 0)

    images_seen = count(
        select(func.count()).select_from(Sighting).where(Sighting.campaign_id == cid)
    )
    images_hashed = count(
        select(func.count())
        .select_from(Sighting)
        .where(
            Sighting.campaign_id == cid,
            Sighting.image_id.is_not(None),
            Sighting.error.is_(None),
        )
    )
    errors = dict(
        session.execute(
            select(Sighting.error, func.count())
            .where(Sighting.campaign_id == cid, Sighting.error.is_not(None))
            .group_by(Sighting.error)
        ).all()
    )
    # A URL is "exact" if any exact match exists for it, else "near".
    exact_ids = (
        select(Match.sighting_id).where(Match.campaign_id == cid, Match.kind == "exact").distinct()
    )
    matched_urls = count(
        select(func.count(distinct(Match.sighting_id))).where(Match.campaign_id == cid)
    )
    exact_urls = count(select(func.count()).select_from(exact_ids.subquery()))
    notices = dict(
        session.execute(
            select(Notice.status, func.count())
            .where(Notice.campaign_id == cid)
            .group_by(Notice.status)
        ).all()
    )
    hosts_matched = count(
        select(func.count(distinct(Sighting.host)))
        .select_from(Match)
        .join(Sighting, Sighting.id == Match.sighting_id)
        .where(Match.campaign_id == cid)
    )
    runs = [
        run_json(r, live_run(r.number) if live_run is not None else None)
        for r in list_runs(session, cid)
    ]
    return {
        "campaign": campaign.name,
        "status": campaign.status,
        "run": {k: runs[-1][k] for k in ("number", "status")} if runs else None,
        "runs": [{**r, "figures": _run_figures(r.pop("stats"))} for r in runs],
        "seeds": list(campaign.seeds),
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
        "pages": live.get(st.PAGES_CRAWLED, 0),
        "page_errors": live.get(st.PAGES_ERRORS, 0),
        "page_errors_by_reason": st.errors_by_reason(live, (st.PAGE_ERROR,)),
        "images_found": live.get(st.IMAGES_FOUND, 0),
        "images_queued": live.get(st.IMAGES_QUEUED, 0),
        "images_fetched": live.get(st.IMAGES_FETCHED, 0),
        "images_recorded": images_seen,
        "images_hashed": images_hashed,
        "low_quality": live.get(st.LOW_QUALITY, 0),
        "matches": {"urls": matched_urls, "exact": exact_urls, "near": matched_urls - exact_urls},
        "hosts_with_matches": hosts_matched,
        "notices": {"total": sum(notices.values()), **notices},
        "errors": {"total": sum(errors.values()), "by_reason": errors},
    }


def _run_figures(live: Mapping[str, int]) -> dict[str, int]:
    """One run's counters under the summary's names (the totals use the same)."""
    return {
        "pages": live.get(st.PAGES_CRAWLED, 0),
        "page_errors": live.get(st.PAGES_ERRORS, 0),
        "images_found": live.get(st.IMAGES_FOUND, 0),
        "images_queued": live.get(st.IMAGES_QUEUED, 0),
        "images_fetched": live.get(st.IMAGES_FETCHED, 0),
        "images_done": live.get(st.IMAGES_DONE, 0),
        "images_matched": live.get(st.IMAGES_MATCHED, 0),
    }


def campaign_matches(session: Session, name: str) -> list[dict[str, Any]]:
    """One row per matched image URL: how it matched and against which lists."""
    campaign = get_campaign(session, name)
    rows = session.execute(
        select(Sighting, Match, HashEntry.kind, HashEntry.category, HashList.name, Image)
        .join(Match, Match.sighting_id == Sighting.id)
        .join(HashEntry, HashEntry.id == Match.entry_id)
        .join(HashList, HashList.id == HashEntry.list_id)
        .outerjoin(Image, Image.id == Sighting.image_id)
        .where(Sighting.campaign_id == campaign.id)
        .order_by(Sighting.host, Sighting.image_url)
    ).all()
    by_url: dict[str, dict[str, Any]] = {}
    for sighting, match, _entry_kind, category, list_name, image in rows:
        row = by_url.setdefault(
            sighting.image_url,
            {
                "url": sighting.image_url,
                "page": sighting.page_url,
                "host": sighting.host,
                "server_ip": sighting.server_ip,
                "kind": "near",
                "distance": None,
                "variant": None,
                "hash_kinds": [],
                "lists": [],
                "categories": [],
                "sha256": image.sha256 if image else None,
                "pdq": image.pdq if image else None,
                "detected_at": sighting.fetched_at.isoformat(),
                # found by matching a later list against the stored hashes (rematch)
                "retroactive": True,
            },
        )
        row["retroactive"] = row["retroactive"] and bool(match.retroactive)
        if match.kind == "exact":
            row["kind"] = "exact"
        if match.hash_kind == "pdq" and (
            row["distance"] is None or match.distance < row["distance"]
        ):
            row["distance"], row["variant"] = match.distance, match.variant
        for key, value in (
            ("hash_kinds", match.hash_kind),
            ("lists", list_name),
            ("categories", category),
        ):
            if value and value not in row[key]:
                row[key].append(value)
    return list(by_url.values())
