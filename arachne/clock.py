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


def human_duration(seconds: float | None, missing: str = "-") -> str:
    """A duration as people read it (time to removal, re-check spacing): seconds, minutes,
    hours or days, whichever unit gives at least 2."""
    if seconds is None:
        return missing
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
