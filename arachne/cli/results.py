"""`arachne matches`, `arachne stats`."""

from __future__ import annotations

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
        later = "  (retroactive)" if r["retroactive"] else ""
        click.echo(f"{r['kind']:5}{dist:6} {r['url']}  [{', '.join(r['lists'])}]{later}")
    click.echo(f"{len(rows)} matched URL(s)", err=True)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def stats(ctx: Ctx, name: str, as_json: bool) -> None:
    """Figures of campaign NAME: pages, images, matches, notices, errors; in all and for
    each run (``runs``)."""
    from arachne.report import live_run_stats, live_stats, print_summary
    from arachne.store.db import Store
    from arachne.store.summary import campaign_summary

    s = ctx.settings
    with operator_errors(), Store.open(s).session() as session:
        summary = campaign_summary(session, name, live_stats(s, name), live_run_stats(s, name))
    echo_json(summary) if as_json else print_summary(summary)
