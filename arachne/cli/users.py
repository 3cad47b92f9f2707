"""`arachne users`, `arachne tokens`: who may use the console and the API, and how much."""

from __future__ import annotations

import getpass
import sys

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx
from arachne.store.users import MAX_TOKEN_DAYS

ROLE_HELP = (
    "viewer reads; operator also runs campaigns, sends notices, imports lists; admin also "
    "manages users and tokens."
)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@cli.group("users")
def users_group() -> None:
    """Console users (a name, a role, an argon2 password hash)."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True,
              help=ROLE_HELP)  # fmt: skip
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def users_add(ctx: Ctx, name: str, role: str, password_stdin: bool) -> None:
    """Add user NAME. The password is asked for twice (or read from stdin); at least 12
    characters."""
    from arachne.store.db import Store
    from arachne.store.users import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with operator_errors(), Store.open(ctx.settings).session() as session:
        add_user(session, name, role, password, actor=_actor())
    click.echo(f"user {name!r} added ({role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def users_list(ctx: Ctx, as_json: bool) -> None:
    """Users and their roles (never their passwords)."""
    from arachne.store.db import Store
    from arachne.store.users import list_users

    with operator_errors(), Store.open(ctx.settings).session() as session:
        users = list_users(session)
    if as_json:
        echo_json(users)
        return
    for u in users:
        click.echo(f"{u['name']:24} {u['role']:9} since {u['created_at'][:10]}")
    if not users:
        click.echo("no users yet: `arachne users add NAME --role admin`", err=True)


@users_group.command("remove")
@click.argument("name")
@pass_ctx
def users_remove(ctx: Ctx, name: str) -> None:
    """Remove user NAME."""
    from arachne.store.db import Store
    from arachne.store.users import remove_user

    with operator_errors(), Store.open(ctx.settings).session() as session:
        remove_user(session, name, actor=_actor())
    click.echo(f"user {name!r} removed")


@cli.group("tokens")
def tokens_group() -> None:
    """API tokens (`Authorization: Bearer <token>`), stored only as their SHA-256."""


@tokens_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True,
              help=ROLE_HELP)  # fmt: skip
@click.option(
    "--expires",
    "days",
    type=click.FloatRange(0, MAX_TOKEN_DAYS, min_open=True),
    help=f"Days until it stops working (at most {MAX_TOKEN_DAYS}; default: never).",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def tokens_create(ctx: Ctx, name: str, role: str, days: float | None, as_json: bool) -> None:
    """Create a token named NAME and print it, once: it cannot be shown again."""
    from arachne.store.db import Store
    from arachne.store.users import create_token

    with operator_errors(), Store.open(ctx.settings).session() as session:
        token, secret = create_token(session, name, role, actor=_actor(), expires_days=days)
        expires = token.expires_at.isoformat() if token.expires_at else None
        info = {"id": token.id, "name": name, "role": role, "token": secret, "expires_at": expires}
    if as_json:
        echo_json(info)
        return
    click.echo(secret)
    until = f", expires {info['expires_at'][:16]}" if info["expires_at"] else ""
    click.echo(f"token {token.id} {name!r} ({role}{until}): keep it now, it is not shown again",
               err=True)  # fmt: skip


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def tokens_list(ctx: Ctx, as_json: bool) -> None:
    """Tokens: id, name, role, state, the first characters (never the whole token)."""
    from arachne.store.db import Store
    from arachne.store.users import list_tokens

    with operator_errors(), Store.open(ctx.settings).session() as session:
        tokens = list_tokens(session)
    if as_json:
        echo_json(tokens)
        return
    for t in tokens:
        click.echo(f"{t['id']:<4} {t['name']:20} {t['role']:9} {t['state']:8} {t['prefix']}…")


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@pass_ctx
def tokens_revoke(ctx: Ctx, token_id: int) -> None:
    """Revoke token TOKEN_ID: it stops working at once (within 5 s on a running dashboard)."""
    from arachne.store.db import Store
    from arachne.store.users import revoke_token

    with operator_errors(), Store.open(ctx.settings).session() as session:
        revoke_token(session, token_id, actor=_actor())
    click.echo(f"token {token_id} revoked")
