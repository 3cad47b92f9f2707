"""`arachne lists`: import known-hash lists and show them (never their hashes)."""

from __future__ import annotations

from pathlib import Path

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx
from arachne.matcher.lists import FORMATS, HASH_KINDS


@cli.group("lists", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@click.pass_context
def lists_group(cctx: click.Context, ctx: Ctx, as_json: bool) -> None:
    """Known-hash lists. Without a sub-command: show lists with counts by hash kind
    (hash values are never printed)."""
    if cctx.invoked_subcommand is not None:
        return
    from arachne.store.db import Store
    from arachne.store.hashlists import list_summaries

    with operator_errors():
        summaries = list_summaries(Store.open(ctx.settings))
    if as_json:
        echo_json(summaries)
        return
    if not summaries:
        click.echo("no lists imported yet (see `arachne lists import --help`)")
        return
    click.echo(f"{'name':24} {'format':8} {'threshold':>9} {'active':>9} {'retracted':>9}  kinds")
    for s in summaries:
        kinds = ", ".join(f"{k} {n}" for k, n in s["active"].items())
        threshold = s["threshold"] if s["threshold"] is not None else "default"
        click.echo(
            f"{s['name']:24} {s['format']:8} {threshold!s:>9} {s['active_total']:>9} "
            f"{s['retracted']:>9}  {kinds}"
        )


@lists_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", required=True, help="List name; importing again replaces its content.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    help="Force a format (default: detected from the content).",
)
@click.option(
    "--kind",
    type=click.Choice(list(HASH_KINDS)),
    help="Hash kind of every bare-hex line (needed for 64-hex lists: sha256 or pdq).",
)
@click.option(
    "--threshold",
    type=click.IntRange(0, 128),
    help="PDQ distance for this list (default 31).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Import only entries of this category (repeatable), e.g. the CSAM categories of a "
    "VICS export; default: every entry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def lists_import(
    ctx: Ctx,
    path: Path,
    name: str,
    fmt: str | None,
    kind: str | None,
    threshold: int | None,
    categories: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import a hash list: VICS JSON (Project VIC), NCMEC hash-sharing XML, CSV with a
    header, text `pdq <hex>` lines or bare hex (detected from the content).

    A malformed file is refused with its line number and nothing is imported.
    Re-importing a whole list (text, CSV, VICS) under the same name adds new entries and
    retracts missing ones; an NCMEC file is a delta: it adds what it lists and retracts
    what it deletes. Hashes Arachne cannot match (PhotoDNA, video) are counted, not stored.
    """

    from arachne.store.db import Store
    from arachne.store.hashlists import import_list

    with operator_errors():
        report = import_list(
            Store.open(ctx.settings),
            name,
            path,
            format=fmt,
            kind=kind,
            threshold=threshold,
            categories=categories or None,
        )
    data = {
        "name": report.name,
        "format": report.format,
        "added": report.added,
        "retracted": report.retracted,
        "unchanged": report.unchanged,
        "active": report.by_kind,
        "skipped": report.skipped,
    }
    if as_json:
        echo_json(data)
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in report.by_kind.items())
        click.echo(
            f"imported list {name!r} ({report.format}): {report.added} added, "
            f"{report.retracted} retracted, {report.unchanged} unchanged; active: {kinds}"
        )
        if report.skipped:
            parts = ", ".join(f"{n} {kind}" for kind, n in report.skipped.items())
            click.echo(
                f"skipped {parts} hashes: Arachne cannot match them, so they were not stored"
            )
