"""`arachne lists`: import known-hash lists and show them (never their hashes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
@click.option(
    "--force",
    is_flag=True,
    help="Import even a file with no entries, or one that retracts more than "
    "ARACHNE_LIST_RETRACT_MAX (default 20%) of the list's active entries.",
)
@click.option(
    "--no-rematch",
    is_flag=True,
    help="Do not match the new and changed entries against the images already stored "
    "(`arachne rematch` does it later).",
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
    force: bool,
    no_rematch: bool,
    as_json: bool,
) -> None:
    """Import a hash list: VICS JSON (Project VIC), NCMEC hash-sharing XML, CSV with a
    header, text `pdq <hex>` lines or bare hex (detected from the content).

    A malformed file is refused with its line number and nothing is imported.
    Re-importing a whole list (text, CSV, VICS) under the same name adds new entries and
    retracts missing ones; an NCMEC file is a delta: it adds what it lists and retracts
    what it deletes. Hashes Arachne cannot match (PhotoDNA, video) are counted, not stored.

    A file with no entries, or one that would retract more than a fifth of the list
    (ARACHNE_LIST_RETRACT_MAX), is refused unless --force: vendor files arrive truncated.
    Every import is a numbered version (`arachne lists history NAME`) that
    `arachne lists rollback` can undo. New and changed entries are then matched against
    every image already stored, on the workers (see `arachne rematch`).
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
            force=force,
            max_retract_share=ctx.settings.list_retract_max,
        )
    data = {
        "name": report.name,
        "version": report.version,
        "format": report.format,
        "added": report.added,
        "updated": report.updated,
        "retracted": report.retracted,
        "unchanged": report.unchanged,
        "active": report.by_kind,
        "skipped": report.skipped,
        "duplicates": report.duplicates,
        "conflicts": report.conflicts,
    }
    if not no_rematch and (report.added or report.updated):
        data["rematch"] = _queue_rematch(ctx, name, report.version, quiet=as_json)
    if as_json:
        echo_json(data)
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in report.by_kind.items())
        click.echo(
            f"imported list {name!r} version {report.version} ({report.format}): "
            f"{report.added} added, {report.updated} updated, {report.retracted} retracted, "
            f"{report.unchanged} unchanged; active: {kinds or 'none'}"
        )
        if report.duplicates:
            click.echo(
                f"{report.duplicates} repeated hash(es) in the file were collapsed, the first "
                f"occurrence kept ({report.conflicts} disagreed on category, id or threshold)",
                err=True,
            )
        if report.skipped:
            parts = ", ".join(f"{n} {kind}" for kind, n in report.skipped.items())
            click.echo(
                f"skipped {parts} hashes: Arachne cannot match them, so they were not stored"
            )


@lists_group.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def lists_history(ctx: Ctx, name: str, as_json: bool) -> None:
    """Every version of list NAME: when, what (import, retract, rollback, delete), by whom,
    the counts, and an import's source file with its SHA-256."""
    from arachne.store.db import Store
    from arachne.store.listversions import history

    with operator_errors():
        versions = history(Store.open(ctx.settings), name)
    if as_json:
        echo_json(versions)
        return
    for v in versions:
        c = v["counts"]
        active = sum((c.get("active") or {}).values())
        forced = " (forced)" if v["forced"] else ""
        what = v["action"] + (f" {v['note']}" if v["note"] and v["action"] != "import" else "")
        click.echo(
            f"v{v['version']:<4} {v['at'][:19]}  {what}{forced}: +{c.get('added', 0)} "
            f"~{c.get('updated', 0)} -{c.get('retracted', 0)}, active {active}"
        )
        if v["source"]:
            sha = f"  sha256 {v['source_sha256']}" if v["source_sha256"] else ""
            click.echo(f"      {v['source']}{sha}")


@lists_group.command("rollback")
@click.argument("name")
@click.option("--to", "to", type=int, required=True, help="The version to go back to.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def lists_rollback(ctx: Ctx, name: str, to: int, as_json: bool) -> None:
    """Restore list NAME to its state at version --to (which entries are active, their
    categories, ids and thresholds). The rollback is itself a new version, so it can be
    undone the same way."""
    from arachne.store.db import Store
    from arachne.store.listversions import rollback

    with operator_errors():
        report = rollback(Store.open(ctx.settings), name, to)
    _print_change(report, as_json)


@lists_group.command("retract")
@click.argument("name")
@click.option(
    "--id",
    "ids",
    multiple=True,
    required=True,
    help="External (vendor) id of an entry to retract; repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def lists_retract(ctx: Ctx, name: str, ids: tuple[str, ...], as_json: bool) -> None:
    """Retract the entries of list NAME with these ids: they stop matching at once (workers
    pick the change up with their next batch); past matches keep their evidence."""
    from arachne.store.db import Store
    from arachne.store.listversions import retract_ids

    with operator_errors():
        report = retract_ids(Store.open(ctx.settings), name, ids)
    _print_change(report, as_json)
    unknown = report.counts.get("unknown_ids") or []
    if unknown and not as_json:
        click.echo(f"not in the list (ignored): {', '.join(unknown)}", err=True)


@lists_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def lists_delete(ctx: Ctx, name: str, yes: bool, as_json: bool) -> None:
    """Delete list NAME: every entry stops matching and the list is no longer shown.
    Its rows stay for the evidence of past matches; importing NAME again brings it back."""
    from arachne.store.db import Store
    from arachne.store.listversions import delete_list

    if not yes:
        click.confirm(f"Delete list {name!r}? Its entries stop matching", abort=True)
    with operator_errors():
        report = delete_list(Store.open(ctx.settings), name)
    _print_change(report, as_json)


def _print_change(report: Any, as_json: bool) -> None:
    c = report.counts
    if as_json:
        echo_json({"name": report.name, "version": report.version, "action": report.action, **c})
        return
    active = ", ".join(f"{k} {n}" for k, n in (c.get("active") or {}).items()) or "none"
    click.echo(
        f"list {report.name!r} version {report.version} ({report.action}): "
        f"{c.get('added', 0)} restored, {c.get('updated', 0)} updated, "
        f"{c.get('retracted', 0)} retracted; active: {active}"
    )


def _queue_rematch(ctx: Ctx, name: str, version: int, *, quiet: bool) -> str | None:
    """Queue the matching of a new list version against the stored images; the task id,
    or None when there is nothing stored yet or the queue is out of reach (said once)."""
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.queue.rematch import Selection, enqueue_rematch, ranges_of
    from arachne.store.db import Store

    store = Store.open(ctx.settings)
    if not ranges_of(store):
        return None  # no image hashed yet: nothing to match
    try:
        with redis_url_for(ctx.settings) as url:
            task, jobs = enqueue_rematch(
                store, redis_from_url(url), ctx.settings, Selection(name, version)
            )
    except Exception as exc:  # the list is imported; only the background match is missing
        click.echo(
            f"warning: could not queue the rematch ({exc}); run `arachne rematch --list "
            f"{name} --version {version} --wait`",
            err=True,
        )
        return None
    if not quiet:
        click.echo(
            f"matching its new and changed entries against the stored images on the workers "
            f"(rematch {task}, {jobs} job(s))",
            err=True,
        )
    return task


@cli.command("rematch")
@click.argument("campaign", required=False)
@click.option("--list", "list_name", help="Only this list's entries (default: every list).")
@click.option("--version", type=int, help="Only what this version of --list added or changed.")
@click.option(
    "--review/--no-review",
    default=None,
    help="Also record near misses (the review band) as review items [default: only when "
    "at most 10,000 PDQ entries are matched: the band makes big rematches ~10x slower].",
)
@click.option("--wait", is_flag=True, help="Run it here, in the foreground, with progress.")
@click.option("--status", "task", metavar="TASK", help="Progress of a queued rematch, and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def rematch(
    ctx: Ctx,
    campaign: str | None,
    list_name: str | None,
    version: int | None,
    review: bool | None,
    wait: bool,
    task: str | None,
    as_json: bool,
) -> None:
    """Match list entries against every image already hashed (of CAMPAIGN, or all), from
    the hashes kept per image: nothing is fetched again. New matches are recorded as a
    crawl records them, marked retroactive, and notices follow. Without --wait the work is
    queued for the workers."""
    from arachne.queue.rematch import Selection, enqueue_rematch, ranges_of, rematch_now
    from arachne.store.db import Store

    if version is not None and list_name is None:
        raise click.UsageError("--version needs --list")
    if task is not None:
        _show_progress(ctx, task, as_json)
        return
    sel = Selection(list_name, version, campaign, review)
    with operator_errors():
        store = Store.open(ctx.settings)
        if not wait:
            from arachne.queue.connection import redis_from_url, redis_url_for

            with redis_url_for(ctx.settings) as url:
                task, jobs = enqueue_rematch(store, redis_from_url(url), ctx.settings, sel)
            if as_json:
                echo_json({"task": task, "jobs": jobs})
            else:
                click.echo(f"queued rematch {task}: {jobs} job(s) for the workers")
            return
        ranges = ranges_of(store) or [(0, 1)]
        with click.progressbar(length=len(ranges), label="rematching", file=sys.stderr) as bar:
            total = rematch_now(store, ctx.settings, sel, on_range=lambda _i, _c: bar.update(1))
    if as_json:
        echo_json(total)
    else:
        reviewed = (
            f", {total['review_items']} near miss(es) for review"
            if total["review_band"]
            else " (near misses not searched: --review)"
        )
        click.echo(
            f"rematched {total['images']} stored images: {total['matches']} new match(es) on "
            f"{total['matched_images']} image(s){reviewed}"
        )


def _show_progress(ctx: Ctx, task: str, as_json: bool) -> None:
    from arachne.errors import ArachneError
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.queue.rematch import progress

    with operator_errors(), redis_url_for(ctx.settings) as url:
        state = progress(redis_from_url(url), task)
        if not state:
            raise ArachneError(f"no rematch task {task!r} (tasks are kept 30 days)")
    if as_json:
        echo_json(state)
        return
    click.echo(
        f"rematch {task}: {state['done']} of {state['jobs']} job(s) done, {state['images']} "
        f"images, {state['matches']} new match(es), {state.get('review_items', 0)} near miss(es)"
    )
