"""UTC "now" and the one way Arachne writes a time: ISO-8601 in UTC with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(when: datetime) -> str:
    """ISO-8601 in UTC with a Z, to the second; naive datetimes (SQLite hands those back)
    are UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
