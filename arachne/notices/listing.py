"""What operators look at: every notice with its state and last error."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.notices.render import iso_utc
from arachne.store.models import Host, Notice
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
