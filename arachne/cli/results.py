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


@cli.command()
@click.argument("name")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def explain(ctx: Ctx, name: str, url: str, as_json: bool) -> None:
    """Why image URL matched in campaign NAME: each list entry it hit, how (exact digest or
    PDQ distance, against which threshold), through which variant of the image (a rotation,
    its trimmed content, 2× upscale), the image's PDQ quality, and when and on which page
    it was seen. Never the image."""
    from arachne.store.db import Store
    from arachne.store.explain import explain as explain_url

    with operator_errors(), Store.open(ctx.settings).session() as session:
        found = explain_url(session, name, url, ctx.settings.pdq_threshold)
    if as_json:
        echo_json(found)
        return
    image = found["image"] or {}
    click.echo(f"{found['url']}")
    click.echo(f"  seen {found['seen_at'][:19]} (run {found['run']}) on {found['page']}")
    address = found["server_ip"] or "address unknown"
    click.echo(f"  host {found['host']} ({address}), HTTP {found['http_status']}")
    if image:
        click.echo(
            f"  image {image['format']} {image['width']}x{image['height']}, {image['bytes']} "
            f"bytes, PDQ quality {image['pdq_quality']}, sha256 {image['sha256']}"
        )
    for m in found["matches"]:
        how = (
            f"exact {m['hash_kind']}"
            if m["kind"] == "exact"
            else f"PDQ distance {m['distance']} (threshold {m['threshold']})"
        )
        ident = f" id {m['external_id']}" if m["external_id"] else ""
        flags = [
            label
            for label, on in (
                ("retroactive", m["retroactive"]),
                ("entry since retracted", m["entry_retracted"]),
            )
            if on
        ]
        tail = f" [{', '.join(flags)}]" if flags else ""
        click.echo(f"- list {m['list']!r} entry {m['entry_id']}{ident}: {how}{tail}")
        if m["variant_meaning"]:
            click.echo(f"    via {m['variant']}: {m['variant_meaning']}")
