"""Store reads for the console's pages (the blocking side; handlers run them in a thread).

Counts and text only: URLs are returned as text for the pages to show as text, list entries
are counted by kind and never returned, and nothing here reads image content.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from arachne.notices.listing import notice_list
from arachne.store.db import Store
from arachne.store.hashlists import list_summaries
from arachne.store.listversions import history
from arachne.store.models import AuditLog, Campaign, Match, Notice, Sighting

#: Error URLs a page of the campaign page shows; hosts in its "top hosts" table.
PAGE_ERRORS = 50
TOP_HOSTS = 20
#: Notices a page of the notices page shows.
PAGE_NOTICES = 100
#: References per ``IN (...)`` when reading notices' history from the audit log.
_CHUNK = 500


def today(session: Session) -> dict[str, int]:
    """Matches recorded and notices created and sent since midnight UTC."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def count(model: Any, column: Any) -> int:
        stmt = select(func.count()).select_from(model).where(column >= midnight)
        return int(session.scalar(stmt) or 0)

    return {
        "matches": count(Match, Match.created_at),
        "notices": count(Notice, Notice.created_at),
        "notices_sent": count(Notice, Notice.sent_at),
    }


@dataclass(frozen=True)
class ErrorFilter:
    """Which error URLs to show: by reason, host, a URL substring; one page of them."""

    reason: str | None = None
    host: str | None = None
    text: str | None = None
    limit: int = PAGE_ERRORS
    offset: int = 0


def error_urls(session: Session, campaign_id: int, f: ErrorFilter) -> dict[str, Any]:
    """Image URLs whose fetch or hash failed, newest first, with the recorded reason."""
    where = [Sighting.campaign_id == campaign_id, Sighting.error.is_not(None)]
    if f.reason:
        where.append(Sighting.error == f.reason)
    if f.host:
        where.append(Sighting.host == f.host.lower())
    if f.text:
        where.append(Sighting.image_url.contains(f.text, autoescape=True))
    rows = session.execute(
        select(Sighting)
        .where(*where)
        .order_by(Sighting.fetched_at.desc(), Sighting.id.desc())
        .limit(f.limit)
        .offset(f.offset)
    ).scalars()
    total = session.scalar(select(func.count()).select_from(Sighting).where(*where))
    return {
        **asdict(f),
        "total": int(total or 0),
        "rows": [
            {
                "url": s.image_url,
                "host": s.host,
                "reason": s.error,
                "detail": s.error_detail,
                "http_status": s.http_status,
                "run": s.run,
                "at": _iso(s.fetched_at),
            }
            for s in rows
        ],
    }


def top_hosts(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """Hosts with the most image URLs: how many, how many failed, how many matched."""
    rows = session.execute(
        select(Sighting.host, func.count(), func.count(Sighting.error))
        .where(Sighting.campaign_id == campaign_id)
        .group_by(Sighting.host)
        .order_by(func.count().desc(), Sighting.host)
        .limit(TOP_HOSTS)
    ).all()
    matched = dict(
        session.execute(
            select(Sighting.host, func.count(distinct(Match.sighting_id)))
            .join(Sighting, Sighting.id == Match.sighting_id)
            .where(Match.campaign_id == campaign_id, Sighting.host.in_([r[0] for r in rows]))
            .group_by(Sighting.host)
        ).all()
    )
    return [
        {"host": host, "urls": int(n), "errors": int(err), "matched": int(matched.get(host, 0))}
        for host, n, err in rows
    ]


# -- notices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeFilter:
    campaign: str | None = None
    status: str | None = None
    channel: str | None = None
    text: str | None = None  # in the reference, host or recipient
    limit: int | None = PAGE_NOTICES  # None: all of them (the exports)
    offset: int = 0


def notices(session: Session, f: NoticeFilter, with_history: bool = True) -> dict[str, Any]:
    """Every notice of every campaign, newest first, filtered and paged, with its history
    (the audit log's ``notice.*`` events: each attempt, its outcome and error)."""
    campaigns = dict(
        session.execute(
            select(Notice.reference, Campaign.name).join(
                Campaign, Campaign.id == Notice.campaign_id
            )
        ).all()
    )
    rows = []
    needle = (f.text or "").lower()
    for n in reversed(notice_list(session)):
        n["campaign"] = campaigns.get(n["reference"])
        if (
            (f.campaign and n["campaign"] != f.campaign)
            or (f.status and n["status"] != f.status)
            or (f.channel and n["channel"] != f.channel)
            or (needle and not any(needle in (n[k] or "").lower() for k in _SEARCHED))
        ):
            continue
        rows.append(n)
    page = rows[f.offset : None if f.limit is None else f.offset + f.limit]
    if with_history:
        events = _history(session, [n["reference"] for n in page])
        for n in page:
            n["history"] = events.get(n["reference"], [])
    return {**asdict(f), "total": len(rows), "notices": page}


_SEARCHED = ("reference", "host", "recipient")


def _history(session: Session, references: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    reference = AuditLog.detail["reference"].as_string()
    for lo in range(0, len(references), _CHUNK):
        stmt = (
            select(AuditLog)
            .where(AuditLog.action.like("notice.%"), reference.in_(references[lo : lo + _CHUNK]))
            .order_by(AuditLog.at, AuditLog.id)
        )
        for row in session.scalars(stmt):
            detail = row.detail or {}
            out.setdefault(str(detail.get("reference")), []).append(
                {
                    "at": _iso(row.at),
                    "event": row.action.removeprefix("notice."),
                    "actor": row.actor,
                    "recipient": detail.get("recipient"),
                    "channel": detail.get("channel"),
                    "attempts": detail.get("attempts"),
                    "error": detail.get("error"),
                }
            )
    return out


CSV_COLUMNS = (
    "reference", "campaign", "host", "kind", "cycle", "tier", "recipient", "recipient_source",
    "channel", "status", "attempts", "urls", "language", "created_at", "sent_at",
    "next_attempt_at", "response", "last_error", "first_reference",
)  # fmt: skip
#: What a spreadsheet takes for a formula at the start of a cell (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text that could start a formula gets a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def notices_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


# -- lists -----------------------------------------------------------------------------


def lists(store: Store) -> list[dict[str, Any]]:
    """Each list's counts by kind and its versions (counts only, never an entry)."""
    out = []
    for summary in list_summaries(store):
        versions = history(store, summary["name"])
        imports = [v for v in versions if v["action"] == "import"]
        out.append(
            {
                **summary,
                "versions": list(reversed(versions)),
                "last_import": imports[-1] if imports else None,
            }
        )
    return out


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes for the UTC times it was given.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
