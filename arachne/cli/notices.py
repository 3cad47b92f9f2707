"""`arachne notices send|list|stats` and `arachne recheck`: the loop until content is gone."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx
from arachne.clock import human_duration


@cli.group("notices")
def notices_group() -> None:
    """Removal notices to the hosts serving matches, reminders until the content is gone.

    Re-checks and reminders also run on their own while `arachne worker`/`arachne run`
    processes are up (every ARACHNE_NOTICES_TICK_INTERVAL seconds).
    """


@notices_group.command("send")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Render and show what would be sent; send nothing.")
@click.option(
    "--outbox",
    type=click.Path(path_type=Path, file_okay=False),
    help="Preview: write notices as JSON files to this folder (they stay unsent).",
)
@click.option(
    "--channel",
    type=click.Choice(["smtp", "webhook", "outbox"]),
    help="Delivery channel [ARACHNE_NOTICE_CHANNEL; default smtp].",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def notices_send(
    ctx: Ctx, name: str, dry_run: bool, outbox: Path | None, channel: str | None, as_json: bool
) -> None:
    """Send what is due for campaign NAME: one notice per host for newly matched URLs, and
    the reminders that are due (safe to repeat: nothing is sent twice).

    Exits 1 when any delivery failed (the reason is in `arachne notices list NAME`)."""
    from arachne.notices.deliver import OutboxNotifier, build_notifier
    from arachne.notices.send import send_notices
    from arachne.store.db import Store

    s = ctx.settings
    with operator_errors():
        notifier = None
        if outbox:
            notifier = OutboxNotifier(outbox)
        elif not dry_run:
            notifier = build_notifier(s, channel)
        report = send_notices(Store.open(s), s, name, notifier=notifier, dry_run=dry_run)
    if as_json:
        data = report.as_json()
        if dry_run:
            data["previews"] = [
                {
                    "recipient": rcpt,
                    "reference": r.reference,
                    "subject": r.subject,
                    "language": r.language,
                    "body": r.body_text,
                    "xarf": list(r.xarf_reports),
                }
                for rcpt, r in report.previews
            ]
        echo_json(data)
    else:
        for rcpt, r in report.previews:
            click.echo(f"--- {r.reference} to {rcpt or '(no contact)'} [{r.language}]")
            click.echo(f"Subject: {r.subject}\n")
            click.echo(r.body_text)
            click.echo(f"({len(r.xarf_reports)} XARF report(s) attached, validated)\n")
        for o in report.notices:
            extra = f"  {o.get('error')}" if o.get("error") else ""
            click.echo(
                f"{o['status']:12} {o['host']:30} {o.get('reference') or '':17} "
                f"{o.get('recipient') or ''}{extra}"
            )
        verb = "previewed" if dry_run or outbox else "sent"
        click.echo(
            f"{report.sent} {verb}, {report.no_contact} without contact, "
            f"{report.failed} failed, {report.already_sent} with nothing due"
        )
    if report.failed:
        sys.exit(1)


@notices_group.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def notices_list(ctx: Ctx, name: str, as_json: bool) -> None:
    """Every notice of campaign NAME: recipient, state, attempts, last error."""
    from arachne.notices.listing import notice_list
    from arachne.store.db import Store

    with operator_errors(), Store.open(ctx.settings).session() as session:
        rows = notice_list(session, name)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        when = r["sent_at"] or r["created_at"]
        err = f"  ({r['last_error']})" if r["last_error"] else ""
        click.echo(
            f"{r['reference']:17} {r['status']:10} {r['kind']:8} c{r['cycle']} t{r['tier']} "
            f"{r['host']:25} {r['recipient'] or '-':30} x{r['attempts']} {when}{err}"
        )
    click.echo(f"{len(rows)} notice(s)", err=True)


@notices_group.command("stats")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def notices_stats(ctx: Ctx, name: str | None, as_json: bool) -> None:
    """Time to removal (from the accepted notice to the first check showing it gone):
    median, p90 and % within 24 h, overall and per provider and country. NAME limits it
    to one campaign."""
    from arachne.notices.stats import removal_stats
    from arachne.store.db import Store

    s = ctx.settings
    with operator_errors(), Store.open(s).session() as session:
        stats = removal_stats(session, s, name)
    if as_json:
        echo_json(stats)
        return
    click.echo(_stats_line("all", stats))
    for title, key in (("provider", "by_provider"), ("country", "by_country")):
        click.echo(f"by {title}:")
        for label, row in stats[key].items():
            click.echo("  " + _stats_line(label, row))
    click.echo(f"(resolution: the re-check spacing, {human_duration(stats['resolution_seconds'])})")


def _stats_line(label: str, row: dict[str, Any]) -> str:
    pct = "-" if row["pct_within_24h"] is None else f"{row['pct_within_24h']}%"
    return (
        f"{label:28} {row['incidents']:5} incidents, {row['noticed']} noticed, "
        f"{row['removed']} removed, {row['still_up']} still up; median "
        f"{human_duration(row['median_seconds'])}, p90 {human_duration(row['p90_seconds'])}, "
        f"{pct} within 24 h"
    )


@cli.command("recheck")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def recheck(ctx: Ctx, name: str, as_json: bool) -> None:
    """Re-check every open URL of campaign NAME now: fetched and re-hashed like the workers
    do; removed = 404/410/451, NXDOMAIN or content that no longer matches."""
    from arachne.notices.incidents import sync_incidents
    from arachne.notices.recheck import recheck_incidents
    from arachne.store.db import Store
    from arachne.store.summary import get_campaign

    s = ctx.settings
    with operator_errors():
        store = Store.open(s)
        with store.session() as session:  # matches not yet noticed are open incidents too
            sync_incidents(session, s, datetime.now(UTC), get_campaign(session, name).id)
        report = recheck_incidents(store, s, name, due_only=False)
    if as_json:
        echo_json(report.as_json())
        return
    for r in report.results:
        ttr = r["time_to_removal_seconds"]
        extra = f" after {human_duration(ttr)}" if r["outcome"] == "removed" and ttr else ""
        reason = f" ({r['reason']})" if r["reason"] else ""
        click.echo(f"{r['outcome']:12} {r['url']}{reason}{extra}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "nothing open"
    click.echo(f"{report.checked} checked: {summary}")
