"""Every Redis key template Arachne uses, in one place."""

from __future__ import annotations

PREFIX = "arachne"


def campaign_seen(campaign: str) -> str:
    """SET of sha1(image URL): the per-campaign dedup of versions before runs (only
    deleted now)."""
    return f"{PREFIX}:campaign:{campaign}:seen"


def run_prefix(campaign: str) -> str:
    """What every per-run key of a campaign starts with."""
    return f"{PREFIX}:campaign:{campaign}:run:"


def run_seen(campaign: str, run: int) -> str:
    """SET of sha1(image URL): per-run dedup, so each image URL is queued once a run."""
    return f"{run_prefix(campaign)}{run}:seen"


def campaign_stats(campaign: str) -> str:
    """HASH of live counters over every run; fields are slash-separated stats keys
    (``fetch/status/404``)."""
    return f"{PREFIX}:campaign:{campaign}:stats"


def run_stats(campaign: str, run: int) -> str:
    """HASH of one run's live counters (same fields as ``campaign_stats``)."""
    return f"{run_prefix(campaign)}{run}:stats"


def campaign_timeline(campaign: str) -> str:
    """HASH of per-minute counters for throughput charts: field ``{unix_minute}/{stat}``."""
    return f"{PREFIX}:campaign:{campaign}:timeline"


def campaign_timeline_fine(campaign: str, hour: int) -> str:
    """HASH of one hour's (unix time // 3600) 2-second counters for short runs' charts:
    field ``{unix_time // 2}/{stat}``; each hour's hash expires two hours after its last
    write (dashboard/series.py reads the current and the previous hour)."""
    return f"{PREFIX}:campaign:{campaign}:timeline2s:{hour}"


def campaign_keys(campaign: str) -> list[str]:
    """The keys of a campaign as a whole; its runs' keys start with ``run_prefix``."""
    return [
        campaign_seen(campaign),
        campaign_stats(campaign),
        campaign_timeline(campaign),
        campaign_runner(campaign),
    ]


def notices_tick() -> str:
    """STRING: id of the scheduled notices tick job (re-checks, reminders); its owner alone
    schedules the next one, so at most one tick chain runs however many workers start."""
    return f"{PREFIX}:notices:tick"


def campaign_runner(campaign: str) -> str:
    """STRING: who is running the campaign now ("host pid N since ..."), for the message a
    second `arachne run` prints; the lock itself is the store's (released if its holder dies)."""
    return f"{PREFIX}:campaign:{campaign}:runner"


def frontier(campaign: str, run: int) -> str:
    """Prefix of one run's crawl frontier (per-host queues, leases, dedup sets): the key
    layout is in ``arachne.crawler.frontier``."""
    return f"{run_prefix(campaign)}{run}:frontier"


def host_slots(host: str) -> str:
    """ZSET of the requests in flight to a host, over every process (politeness.py)."""
    return f"{PREFIX}:host:{host}:slots"


def host_state(host: str) -> str:
    """HASH of a host's pacing: next start, Retry-After block, back-off, Crawl-delay."""
    return f"{PREFIX}:host:{host}:state"


def run_control(campaign: str, run: int) -> str:
    """STRING: "paused" or "cancelled" while an operator has paused or cancelled the run;
    spiders and workers look at it (the store's ``runs.status`` is the record)."""
    return f"{run_prefix(campaign)}{run}:control"


def run_matched(campaign: str, run: int) -> str:
    """HASH host → time of its last match in the run: the frontier serves these hosts
    first (under the frontier's prefix, so it is cleared with it)."""
    return f"{frontier(campaign, run)}:matched"


def run_nomatch(campaign: str, run: int) -> str:
    """HASH host → pages crawled since the host's last match (the stop rule's count)."""
    return f"{run_prefix(campaign)}{run}:nomatch"
