"""Every Redis key template Arachne uses, in one place."""

from __future__ import annotations

PREFIX = "arachne"


def campaign_seen(campaign: str) -> str:
    """SET of sha1(image URL): per-campaign dedup so each image URL is queued once."""
    return f"{PREFIX}:campaign:{campaign}:seen"


def campaign_stats(campaign: str) -> str:
    """HASH of live counters, fields are slash-separated stats keys (``fetch/status/404``)."""
    return f"{PREFIX}:campaign:{campaign}:stats"


def campaign_timeline(campaign: str) -> str:
    """HASH of per-minute counters for throughput charts: field ``{unix_minute}/{stat}``."""
    return f"{PREFIX}:campaign:{campaign}:timeline"


def campaign_keys(campaign: str) -> list[str]:
    """Every key that belongs to one campaign (for resetting it)."""
    return [campaign_seen(campaign), campaign_stats(campaign), campaign_timeline(campaign)]


def notices_tick() -> str:
    """STRING: id of the scheduled notices tick job (re-checks, reminders); its owner alone
    schedules the next one, so at most one tick chain runs however many workers start."""
    return f"{PREFIX}:notices:tick"


def campaign_runner(campaign: str) -> str:
    """STRING: who is running the campaign now ("host pid N since ..."), for the message a
    second `arachne run` prints; the lock itself is the store's (released if its holder dies)."""
    return f"{PREFIX}:campaign:{campaign}:runner"
