"""What operators look at: every notice with its state, every incident with its history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.notices.render import iso_utc
from arachne.store.models import Host, Incident, Notice
from arachne.store.summary import get_campaign


def _iso(value: Any) -> str | None:
    return iso_utc(value) if value is not None else None


def notice_list(session: Session, campaign_name: str | None = None) -> list[dict[str, Any]]:
    """Every notice: recipient, state, attempts, last error (never its URLs' content)."""
    stmt = (
        select(Notice, Host.hostname)
        .join(Host, Host.id == Notice.host_id)
        .order_by(Notice.created_at, Notice.id)
    )
    if campaign_name:
        stmt = stmt.where(Notice.campaign_id == get_campaign(session, campaign_name).id)
    return [
        {
            "reference": n.reference,
            "host": hostname,
            "kind": n.kind,
            "cycle": n.cycle,
            "tier": n.tier,
            "recipient": n.recipient,
            "recipient_source": n.contact_source,
            "channel": n.channel,
            "status": n.status,
            "attempts": n.attempts,
            "urls": len(n.urls),
            "language": n.language,
            "created_at": _iso(n.created_at),
            "sent_at": _iso(n.sent_at),
            "response": n.response,
            "last_error": n.last_error,
            "next_attempt_at": _iso(n.next_attempt_at),
            "first_reference": n.first_reference,
        }
        for n, hostname in session.execute(stmt)
    ]


def incident_list(session: Session, campaign_name: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Incident).order_by(Incident.id)
    if campaign_name:
        stmt = stmt.where(Incident.campaign_id == get_campaign(session, campaign_name).id)
    return [
        {
            "url": i.url,
            "host": i.host,
            "state": i.state,
            "notices_sent": i.notices_sent,
            "first_noticed_at": _iso(i.first_noticed_at),
            "first_reference": i.first_reference,
            "next_notice_at": _iso(i.next_notice_at),
            "last_checked_at": _iso(i.last_checked_at),
            "next_check_at": _iso(i.next_check_at),
            "removed_at": _iso(i.removed_at),
            "removal_reason": i.removal_reason,
            "time_to_removal_seconds": i.removal_seconds,
            "reappeared": i.reappeared,
        }
        for i in session.scalars(stmt)
    ]
