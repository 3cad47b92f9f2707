"""`arachne campaign create|list`."""

from __future__ import annotations

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx
from arachne.queue.connection import PRIORITIES


@cli.group("campaign")
def campaign_group() -> None:
    """Create and list crawl campaigns."""


@campaign_group.command("create")
@click.argument("name")
@click.option("--seed", "seeds", multiple=True, required=True, help="Start URL (repeatable).")
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
    help="Pages crawled at most (default from settings: 10000).",
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
    hosts: tuple[str, ...],
    max_depth: int | None,
    max_pages: int | None,
    priority: str,
) -> None:
    """Create campaign NAME. Scope limits the pages followed; images embedded on those pages
    are checked wherever they are hosted."""
    from arachne.crawler.scope import Scope
    from arachne.store.campaigns import create_campaign
    from arachne.store.db import Store

    s = ctx.settings
    for seed in seeds:
        if not seed.startswith(("http://", "https://")):
            raise click.BadParameter(f"{seed!r} is not an http(s) URL", param_hint="--seed")
    try:
        scope = Scope.for_seeds(
            seeds,
            hosts,
            max_depth=max_depth if max_depth is not None else s.max_depth,
            max_pages=max_pages if max_pages is not None else s.max_pages,
            priority=priority,
        )
    except ValueError as exc:  # no host, malformed IPv6 literal, bad port
        raise click.BadParameter(str(exc), param_hint="--seed") from None
    with operator_errors(), Store.open(s).session() as session:
        create_campaign(session, name, list(seeds), scope.as_json())
    click.echo(
        f"created campaign {name!r}: {len(seeds)} seed(s), hosts {sorted(scope.allowed_hosts)}, "
        f"depth ≤ {scope.max_depth}, pages ≤ {scope.max_pages}, priority {scope.priority}"
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
