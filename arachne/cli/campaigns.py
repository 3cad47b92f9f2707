"""`arachne campaign create|list|show|delete`."""

from __future__ import annotations

from pathlib import Path

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx
from arachne.queue.connection import PRIORITIES


@cli.group("campaign")
def campaign_group() -> None:
    """Create and list crawl campaigns."""


@campaign_group.command("create")
@click.argument("name")
@click.option("--seed", "seeds", multiple=True, help="Start URL (repeatable).")
@click.option(
    "--seeds-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="More start URLs: one a line; blank lines and # comments are skipped.",
)
@click.option(
    "--allow-host",
    "hosts",
    multiple=True,
    help="Extra host whose pages may be crawled (repeatable); seed hosts are always allowed.",
)
@click.option(
    "--max-depth",
    type=click.IntRange(0),
    help="Links followed from a seed (default from settings: 5).",
)
@click.option(
    "--max-pages",
    type=click.IntRange(1),
    help="Pages crawled at most in one run (default from settings: 10000).",
)
@click.option(
    "--max-pages-per-host",
    type=click.IntRange(1),
    help="Pages crawled at most per host in one run (default: no per-host budget), so one "
    "huge site cannot use up the run's pages.",
)
@click.option(
    "--stop-after",
    type=click.IntRange(1),
    help="Stop rule: stop following a host's links after this many of its pages in a row "
    "gave no match (default: off). Hosts with matches are crawled first either way.",
)
@click.option(
    "--robots",
    type=click.Choice(["obey", "record", "ignore"]),
    help="robots.txt: obey it, crawl anyway but count what it disallows (record), or ignore "
    "it [default: obey, or ignore with ARACHNE_OBEY_ROBOTS=false].",
)
@click.option(
    "--priority",
    type=click.Choice(list(PRIORITIES)),
    default="normal",
    show_default=True,
    help="Workers take batches of high-priority campaigns first (e.g. a tip-line report).",
)
@pass_ctx
def campaign_create(
    ctx: Ctx,
    name: str,
    seeds: tuple[str, ...],
    seeds_file: Path | None,
    hosts: tuple[str, ...],
    max_depth: int | None,
    max_pages: int | None,
    max_pages_per_host: int | None,
    stop_after: int | None,
    robots: str | None,
    priority: str,
) -> None:
    """Create campaign NAME. Scope limits the pages followed; images embedded on those pages
    are checked wherever they are hosted."""
    from arachne.crawler.scope import Scope
    from arachne.store.campaigns import create_campaign
    from arachne.store.db import Store

    s = ctx.settings
    checked = [(seed, "--seed") for seed in seeds]
    if seeds_file is not None:
        checked += [(seed, f"{seeds_file}:{n}") for n, seed in read_seeds(seeds_file)]
    if not checked:
        raise click.UsageError("give at least one --seed URL or a --seeds-file")
    for seed, where in checked:
        if not seed.startswith(("http://", "https://")):
            raise click.BadParameter(f"{seed!r} is not an http(s) URL", param_hint=where)
    seeds = tuple(dict.fromkeys(seed for seed, _ in checked))
    try:
        scope = Scope.for_seeds(
            seeds,
            hosts,
            max_depth=max_depth if max_depth is not None else s.max_depth,
            max_pages=max_pages if max_pages is not None else s.max_pages,
            max_pages_per_host=max_pages_per_host or 0,
            stop_after=stop_after or 0,
            priority=priority,
            robots=robots or ("obey" if s.obey_robots else "ignore"),
        )
    except ValueError as exc:  # no host, malformed IPv6 literal, bad port
        raise click.BadParameter(str(exc), param_hint="--seed") from None
    with operator_errors(), Store.open(s).session() as session:
        create_campaign(session, name, list(seeds), scope.as_json())
    click.echo(
        f"created campaign {name!r}: {len(seeds)} seed(s), hosts {sorted(scope.allowed_hosts)}, "
        f"depth ≤ {scope.max_depth}, pages ≤ {scope.max_pages}"
        + (f" (≤ {scope.max_pages_per_host} per host)" if scope.max_pages_per_host else "")
        + f", priority {scope.priority}, robots.txt {scope.robots}"
    )


@campaign_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def campaign_list(ctx: Ctx, as_json: bool) -> None:
    """List campaigns."""
    from arachne.store.campaigns import list_campaigns
    from arachne.store.db import Store

    with Store.open(ctx.settings).session() as session:
        rows = [
            {
                "name": c.name,
                "status": c.status,
                "seeds": c.seeds,
                "created_at": c.created_at.isoformat(),
            }
            for c in list_campaigns(session)
        ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:24} {r['status']:10} {', '.join(r['seeds'])}")


def read_seeds(path: Path) -> list[tuple[int, str]]:
    """(line number, URL) for each seed line of a seeds file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--seeds-file") from None
    seeds = []
    for n, line in enumerate(text.splitlines(), 1):
        url = line.split(" #", 1)[0].strip()
        if url and not url.startswith("#"):
            seeds.append((n, url))
    return seeds


@campaign_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def campaign_show(ctx: Ctx, name: str, as_json: bool) -> None:
    """Campaign NAME: seeds, scope, status and times, with its figures."""
    from arachne.report import live_run_stats, live_stats
    from arachne.store.db import Store
    from arachne.store.summary import campaign_summary, get_campaign

    s = ctx.settings
    with operator_errors(), Store.open(s).session() as session:
        c = get_campaign(session, name)
        data = {
            "name": c.name,
            "status": c.status,
            "seeds": c.seeds,
            "scope": c.scope,
            "created_at": c.created_at.isoformat(),
            "started_at": c.started_at.isoformat() if c.started_at else None,
            "finished_at": c.finished_at.isoformat() if c.finished_at else None,
            "summary": campaign_summary(
                session, name, live_stats(s, name), live_run_stats(s, name)
            ),
        }
    if as_json:
        echo_json(data)
        return
    scope = data["scope"]
    click.echo(f"campaign   {data['name']} ({data['status']})")
    click.echo(f"seeds      {', '.join(data['seeds'])}")
    click.echo(
        f"scope      hosts {', '.join(scope.get('allowed_hosts', []))}; depth ≤ "
        f"{scope.get('max_depth')}, pages ≤ {scope.get('max_pages')}, "
        f"priority {scope.get('priority', 'normal')}, robots.txt {scope.get('robots', 'obey')}"
    )
    click.echo(
        f"times      created {data['created_at']}, started {data['started_at'] or '-'}, "
        f"finished {data['finished_at'] or '-'}"
    )
    summary = data["summary"]
    click.echo(
        f"figures    {summary['pages']} pages, {summary['images_queued']} images queued, "
        f"{summary['matches']['urls']} matched URLs, {summary['notices']['total']} notices"
    )
    for run in summary["runs"]:
        f = run["figures"]
        click.echo(
            f"run {run['number']:<6} {run['status']}, started {run['started_at']}, "
            f"finished {run['finished_at'] or '-'}: {f['pages']} pages, "
            f"{f['images_queued']} images queued, {f['images_done']} done, "
            f"{f['images_matched']} matched"
        )


@campaign_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def campaign_delete(ctx: Ctx, name: str, yes: bool) -> None:
    """Delete campaign NAME with its sightings, matches and live counters. Incidents and
    notices stay (they are the hotline's record); they are no longer linked to it."""
    from arachne.crawler.frontier import forget_campaign
    from arachne.errors import CampaignBusy
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.runner import run_lock
    from arachne.store.campaigns import delete_campaign
    from arachne.store.db import Store
    from arachne.store.summary import get_campaign

    s = ctx.settings
    with operator_errors():
        store = Store.open(s)
        with store.session() as session:
            get_campaign(session, name)  # unknown: one clear line, before asking
        if not yes:
            click.confirm(f"delete campaign {name!r} and its sightings and matches?", abort=True)
        with store.exclusive(run_lock(name), wait=False) as free:
            if not free:
                raise CampaignBusy(f"campaign {name!r} is being run; stop that run first")
            with store.session() as session:
                delete_campaign(session, name)
    # Its seen-set and live counters too: a campaign made again under this name must not
    # inherit them (it would queue nothing it had seen).
    try:
        with redis_url_for(s) as url:
            forget_campaign(redis_from_url(url), name)
    except Exception as exc:  # the store part is done; say what is left
        click.echo(f"warning: live counters of {name!r} not cleared ({exc})", err=True)
    click.echo(f"deleted campaign {name!r}")
