"""`arachne matches`, `arachne stats`, `arachne notices send`."""

from __future__ import annotations

from pathlib import Path

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def matches(ctx: Ctx, name: str, as_json: bool) -> None:
    """Matched image URLs of campaign NAME (URLs and hashes, never images)."""
    from arachne.store.db import Store
    from arachne.store.summary import campaign_matches

    with operator_errors(), Store.open(ctx.settings).session() as session:
        rows = campaign_matches(session, name)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        dist = f" d={r['distance']}" if r["distance"] is not None else ""
        click.echo(f"{r['kind']:5}{dist:6} {r['url']}  [{', '.join(r['lists'])}]")
    click.echo(f"{len(rows)} matched URL(s)", err=True)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def stats(ctx: Ctx, name: str, as_json: bool) -> None:
    """Figures of campaign NAME: pages, images, matches, notices, errors."""
    from arachne.report import live_stats, print_summary
    from arachne.store.db import Store
    from arachne.store.summary import campaign_summary

    s = ctx.settings
    with operator_errors(), Store.open(s).session() as session:
        summary = campaign_summary(session, name, live_stats(s, name))
    echo_json(summary) if as_json else print_summary(summary)


@cli.group("notices")
def notices_group() -> None:
    """Removal notices to the hosts serving matches."""


@notices_group.command("send")
@click.argument("name")
@click.option(
    "--outbox",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write notices as JSON files to this folder instead of sending mail.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def notices_send(ctx: Ctx, name: str, outbox: Path | None, as_json: bool) -> None:
    """Send one notice per host for matched URLs not yet reported (safe to repeat)."""
    from arachne.notices.deliver import OutboxNotifier
    from arachne.notices.send import send_notices
    from arachne.store.db import Store

    notifier = OutboxNotifier(outbox) if outbox else None
    with operator_errors():
        report = send_notices(Store.open(ctx.settings), ctx.settings, name, notifier=notifier)
    data = {
        "hosts": report.hosts,
        "sent": report.sent,
        "no_contact": report.no_contact,
        "failed": report.failed,
        "already_sent": report.already_sent,
        "notices": [o._asdict() for o in report.notices],
    }
    if as_json:
        echo_json(data)
        return
    for o in report.notices:
        click.echo(f"{o.status:12} {o.host:30} {o.reference or ''}")
    click.echo(
        f"{report.sent} sent, {report.no_contact} without contact, "
        f"{report.failed} failed, {report.already_sent} already sent"
    )
