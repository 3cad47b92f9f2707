"""Time to removal, from the incidents: median, p90, share removed within 24 h.

Measured from the first accepted notice (SMTP 250 / HTTP 2xx) to the first re-check that
showed the content gone, so the re-check spacing is its resolution. Grouped per provider
and per country (from the host's resolved contact) for the dashboard and the CLI.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.notices.incidents import NOTICED, OPEN, REMOVED, RETRACTED
from arachne.settings import Settings
from arachne.store.models import Host, Incident
from arachne.store.summary import get_campaign

DAY = 86400.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): an actual observed time, never interpolated."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats
    return ordered[int(rank) - 1]


def summarise(rows: Iterable[tuple[str, float | None, bool]]) -> dict[str, Any]:
    """rows: (state, removal_seconds, noticed) for each incident."""
    states: Counter[str] = Counter()
    times: list[float] = []
    noticed = removed_before_notice = 0
    for state, seconds, was_noticed in rows:
        states[state] += 1
        if state == RETRACTED:  # no longer known material: not a removal, not a failure
            continue
        if was_noticed:
            noticed += 1
            if seconds is not None:
                times.append(seconds)
        elif state == REMOVED:
            removed_before_notice += 1
    within = sum(1 for t in times if t <= DAY)
    return {
        "incidents": sum(n for s, n in states.items() if s != RETRACTED),
        "retracted": states[RETRACTED],
        "open": states[OPEN],
        "noticed": noticed,
        "still_up": states[OPEN] + states[NOTICED],
        "removed": states[REMOVED],
        "removed_after_notice": len(times),
        "removed_before_notice": removed_before_notice,
        "median_seconds": percentile(times, 50),
        "p90_seconds": percentile(times, 90),
        # Of the noticed incidents, the share gone within 24 h of the notice: still-up ones
        # count against it, so a provider that ignores notices cannot score well.
        "pct_within_24h": round(100.0 * within / noticed, 1) if noticed else None,
    }


def removal_stats(
    session: Session, settings: Settings, campaign_name: str | None = None
) -> dict[str, Any]:
    stmt = select(
        Incident.state,
        Incident.removal_seconds,
        Incident.first_noticed_at,
        Host.provider,
        Host.country,
        Incident.host,
    ).outerjoin(Host, Host.hostname == Incident.host)
    if campaign_name:
        stmt = stmt.where(Incident.campaign_id == get_campaign(session, campaign_name).id)
    rows = session.execute(stmt).all()
    by_provider: dict[str, list[tuple[str, float | None, bool]]] = defaultdict(list)
    by_country: dict[str, list[tuple[str, float | None, bool]]] = defaultdict(list)
    everything = []
    for state, seconds, first_noticed, provider, country, host in rows:
        row = (state, seconds, first_noticed is not None)
        everything.append(row)
        by_provider[provider or f"(unknown: {host})"].append(row)
        by_country[country or "??"].append(row)
    return {
        "campaign": campaign_name,
        "resolution_seconds": settings.recheck_interval,
        **summarise(everything),
        "by_provider": {k: summarise(v) for k, v in sorted(by_provider.items())},
        "by_country": {k: summarise(v) for k, v in sorted(by_country.items())},
    }
