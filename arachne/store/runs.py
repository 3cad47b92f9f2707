"""Runs of a campaign: which one a crawl works on, and how each ended.

A crawl (``arachne run`` or any number of ``arachne crawl`` processes) joins the campaign's
latest run while it is unfinished, so a crash or a stop resumes where it was; once that run
is finished, the next crawl opens a new one, with a fresh frontier, seen-sets and counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arachne.clock import utcnow
from arachne.errors import RunStateError
from arachne.store.models import Run
from arachne.store.summary import get_campaign

FINISHED = frozenset({"done", "cancelled"})
"""Statuses after which the next crawl starts a new run (the others resume)."""
RESUMABLE = frozenset({"running", "stopped", "failed"})
KEPT = frozenset({"paused", "cancelled"})
"""Set by an operator: a crawl process ending does not overwrite them."""


def latest_run(session: Session, campaign_id: int) -> Run | None:
    return session.scalar(
        select(Run).where(Run.campaign_id == campaign_id).order_by(Run.number.desc()).limit(1)
    )


def list_runs(session: Session, campaign_id: int) -> list[Run]:
    return list(
        session.scalars(select(Run).where(Run.campaign_id == campaign_id).order_by(Run.number))
    )


def open_run(session: Session, name: str) -> tuple[Run, bool]:
    """The run a crawl of campaign ``name`` works on, and whether it is a new one.

    Two crawls starting together may both try to open run N+1: the unique (campaign,
    number) lets one in, and the other joins it.
    """
    campaign = get_campaign(session, name)
    for _ in range(3):
        run = latest_run(session, campaign.id)
        if run is not None and run.status == "paused":
            raise RunStateError(
                f"run {run.number} of {name!r} is paused: `arachne campaign resume {name}` "
                f"goes on with it, `arachne campaign cancel {name}` ends it"
            )
        if run is not None and run.status not in FINISHED:
            run.status = "running"
            session.flush()
            return run, False
        number = run.number + 1 if run is not None else 1
        try:
            with session.begin_nested():
                run = Run(campaign_id=campaign.id, number=number, status="running", stats={})
                session.add(run)
        except IntegrityError:
            continue  # another crawl opened it first: join that one
        return run, True
    raise RuntimeError(f"could not open a run of campaign {name!r}")


def known_bad_hosts(session: Session, campaign_id: int) -> set[str]:
    """Hosts that served matches in earlier runs, and the hosts of the pages that showed
    them: a new run crawls these first."""
    from arachne.store.models import Match, Sighting
    from arachne.urls import host_of

    rows = session.execute(
        select(Sighting.host, Sighting.page_url)
        .join(Match, Match.sighting_id == Sighting.id)
        .where(Sighting.campaign_id == campaign_id)
        .distinct()
    ).all()
    return {h for host, page in rows for h in (host, host_of(page or "")) if h}


def get_run(session: Session, name: str, number: int) -> Run:
    campaign = get_campaign(session, name)
    run = session.scalar(select(Run).where(Run.campaign_id == campaign.id, Run.number == number))
    if run is None:
        raise LookupError(f"campaign {name!r} has no run {number}")
    return run


def end_run(
    session: Session,
    name: str,
    number: int,
    status: str,
    live: Mapping[str, int] | None = None,
) -> None:
    """Record how run ``number`` ended (and its counters, so they outlive Redis)."""
    run = get_run(session, name, number)
    if run.status not in KEPT:
        run.status = status
        if status in FINISHED:
            run.finished_at = utcnow()
    if live is not None:
        run.stats = dict(live)


def control_run(session: Session, name: str, action: str) -> Run:
    """An operator's ``pause``, ``resume`` or ``cancel`` of the campaign's latest run."""
    campaign = get_campaign(session, name)
    run = latest_run(session, campaign.id)
    if run is None or run.status in FINISHED:
        raise RunStateError(f"campaign {name!r} has no unfinished run to {action}")
    if action == "pause":
        if run.status == "paused":
            raise RunStateError(f"run {run.number} of {name!r} is paused already")
        run.status = "paused"
    elif action == "resume":
        if run.status != "paused":
            raise RunStateError(f"run {run.number} of {name!r} is not paused ({run.status})")
        run.status = "running"
    elif action == "cancel":
        run.status, run.finished_at = "cancelled", utcnow()
    else:
        raise ValueError(action)
    return run


def run_json(run: Run, live: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {
        "number": run.number,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "stats": dict(live) if live is not None else dict(run.stats or {}),
    }
