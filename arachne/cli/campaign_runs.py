"""`arachne campaign pause|resume|cancel NAME`: an operator's hand on a campaign's run.

The store records the run's status; a Redis key tells the processes at work at once:
spiders stop leasing pages (pause) or close (cancel), workers put a paused run's image
batches off and drop a cancelled run's.
"""

from __future__ import annotations

import click

from arachne.cli.base import Ctx, operator_errors, pass_ctx
from arachne.cli.campaigns import campaign_group

_DONE = {
    "pause": "paused: spiders lease no more pages and workers put its images off; "
    "`arachne campaign resume {name}` goes on",
    "resume": "resumed: spiders and workers go on where they were",
    "cancel": "cancelled: spiders close, workers drop its queued images; the next "
    "`arachne run {name}` starts a new run",
}


def _control(ctx: Ctx, name: str, action: str) -> None:
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.runner import control_campaign
    from arachne.store.db import Store

    s = ctx.settings
    with operator_errors(), redis_url_for(s) as url:
        number = control_campaign(Store.open(s), redis_from_url(url), name, action)
    click.echo(f"run {number} of {name!r} " + _DONE[action].format(name=name))


@campaign_group.command("pause")
@click.argument("name")
@pass_ctx
def campaign_pause(ctx: Ctx, name: str) -> None:
    """Pause campaign NAME's run: no new page or image requests until it is resumed."""
    _control(ctx, name, "pause")


@campaign_group.command("resume")
@click.argument("name")
@pass_ctx
def campaign_resume(ctx: Ctx, name: str) -> None:
    """Resume campaign NAME's paused run where it was."""
    _control(ctx, name, "resume")


@campaign_group.command("cancel")
@click.argument("name")
@pass_ctx
def campaign_cancel(ctx: Ctx, name: str) -> None:
    """Cancel campaign NAME's run: spiders stop, its queued images are dropped. What it
    found so far stays; the next run starts afresh."""
    _control(ctx, name, "cancel")
