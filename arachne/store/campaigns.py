"""Campaign rows: create, look up, status changes and stats snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.errors import CampaignExists
from arachne.store.models import AuditLog, Campaign, utcnow
from arachne.store.summary import get_campaign

__all__ = [
    "create_campaign",
    "delete_campaign",
    "get_campaign",
    "list_campaigns",
    "set_status",
    "snapshot_stats",
]


def create_campaign(
    session: Session,
    name: str,
    seeds: list[str],
    scope: dict[str, Any],
    *,
    actor: str = "cli",
) -> Campaign:
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
        raise CampaignExists(f"campaign {name!r} already exists")
    campaign = Campaign(name=name, seeds=list(seeds), scope=scope, status="created", stats={})
    session.add(campaign)
    session.add(AuditLog(actor=actor, action="campaign.create", detail={"name": name}))
    session.flush()
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.created_at)))


def set_status(session: Session, name: str, status: str) -> None:
    campaign = get_campaign(session, name)
    campaign.status = status
    if status == "running" and campaign.started_at is None:
        campaign.started_at = utcnow()
    if status in ("done", "failed", "stopped"):
        campaign.finished_at = utcnow()


def snapshot_stats(session: Session, name: str, live: Mapping[str, int]) -> None:
    """Copy the live Redis counters into the store, so they outlive Redis."""
    get_campaign(session, name).stats = dict(live)


def delete_campaign(session: Session, name: str) -> bool:
    """Remove a campaign with its sightings and matches (notices stay, unlinked)."""
    from sqlalchemy import delete

    from arachne.store.models import Match, Notice, Run, Sighting

    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        return False
    session.execute(delete(Match).where(Match.campaign_id == campaign.id))
    session.execute(delete(Sighting).where(Sighting.campaign_id == campaign.id))
    session.execute(delete(Run).where(Run.campaign_id == campaign.id))
    session.query(Notice).filter(Notice.campaign_id == campaign.id).update({"campaign_id": None})
    session.delete(campaign)
    session.add(AuditLog(actor="cli", action="campaign.delete", detail={"name": name}))
    return True
