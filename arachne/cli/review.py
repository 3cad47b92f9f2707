"""`arachne review`: near misses for analysts (list, confirm, reject)."""

from __future__ import annotations

import getpass

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx


@cli.group("review")
def review_group() -> None:
    """Near misses: PDQ distances just above a list's threshold (ARACHNE_REVIEW_BAND, default
    up to 45). They never become notices on their own: an analyst confirms them (a match,
    and notices follow) or rejects them (that image never matches that entry again)."""


@review_group.command("list")
@click.argument("campaign", required=False)
@click.option(
    "--state",
    type=click.Choice(["pending", "confirmed", "rejected", "all"]),
    default="pending",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def review_list(ctx: Ctx, campaign: str | None, state: str, as_json: bool) -> None:
    """Review items, oldest first (of CAMPAIGN, or all): URL, list entry, distance."""
    from arachne.store.db import Store
    from arachne.store.review import review_items

    with operator_errors(), Store.open(ctx.settings).session() as session:
        items = review_items(session, campaign, None if state == "all" else state)
    if as_json:
        echo_json(items)
        return
    for i in items:
        decided = f" {i['state']} by {i['decided_by']}" if i["state"] != "pending" else ""
        click.echo(
            f"#{i['id']:<5} d={i['distance']:<3} {i['url']}  [{i['list']} entry "
            f"{i['entry_id']}, via {i['variant']}]{decided}"
        )
    click.echo(f"{len(items)} review item(s)", err=True)


@review_group.command("decide")
@click.argument("item_id", type=int)
@click.argument("verdict", type=click.Choice(["confirm", "reject"]))
@click.option("--note", help="Why, for the audit log.")
@click.option(
    "--add-to",
    "add_to",
    metavar="LIST",
    help="On confirm: add the image's PDQ to this local list (created if missing), so its "
    "copies match from now on.",
)
@click.option("--by", "actor", help="Who decides (default: your login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def review_decide(
    ctx: Ctx,
    item_id: int,
    verdict: str,
    note: str | None,
    add_to: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Confirm review item ITEM_ID (it becomes a match; notices follow) or reject it (the
    image is suppressed for that entry: a false positive). Recorded with who and when."""
    from arachne.store.db import Store
    from arachne.store.listversions import add_entry
    from arachne.store.review import CONFIRMED, REJECTED, decide

    if add_to and verdict != "confirm":
        raise click.UsageError("--add-to goes with confirm")
    who = actor or getpass.getuser()
    with operator_errors(), Store.open(ctx.settings).session() as session:
        item, pdq = decide(
            session, item_id, CONFIRMED if verdict == "confirm" else REJECTED, actor=who, note=note
        )
        version = None
        if add_to and pdq:
            version = add_entry(
                session, add_to, "pdq", pdq, actor=who, note=f"review item {item_id}"
            )
        result = {
            "id": item.id,
            "state": item.state,
            "decided_by": who,
            "added_to": add_to if version is not None else None,
            "list_version": version.number if version is not None else None,
        }
    if as_json:
        echo_json(result)
        return
    click.echo(f"review item {item_id} {result['state']} by {who}")
    if version is not None:
        click.echo(f"its PDQ joined list {add_to!r} (version {version.number})")
