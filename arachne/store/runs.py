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
from arachne.store.models import Run
from arachne.store.summary import get_campaign

FINISHED = frozenset({"done", "cancelled"})
"""Statuses after which the next crawl starts a new run (the others resume)."""
RESUMABLE = frozenset({"running", "stopped", "failed"})


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
    run.status = status
    if status in FINISHED:
        run.finished_at = utcnow()
    if live is not None:
        run.stats = dict(live)


def run_json(run: Run, live: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {
        "number": run.number,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "stats": dict(live) if live is not None else dict(run.stats or {}),
    }
