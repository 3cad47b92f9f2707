"""`arachne contacts resolve`, `arachne contacts update`: who gets a host's notices, and why."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx


@cli.group("contacts")
def contacts_group() -> None:
    """Abuse contacts: operator overrides, CDNs, RDAP networks and registrars.

    A notice goes to the first contact found in this order: the overrides file
    (contacts_file), the CDN fronting the host, the abuse desk of the network holding the
    server IP (RDAP), the domain's registrar. The others become escalation targets.
    """


@contacts_group.command("resolve")
@click.argument("host")
@click.option("--ip", help="Server IP the worker recorded (default: resolve HOST with DNS).")
@click.option("--json", "as_json", is_flag=True, help="Print the contact and chain as JSON.")
@pass_ctx
def resolve(ctx: Ctx, host: str, ip: str | None, as_json: bool) -> None:
    """Who gets the notice for HOST, and why: the contact, its provider, country and CDN,
    the escalation list, and every step of the resolution (source, query, outcome, entity,
    time). RDAP answers are cached in the store. Exit 0 with a contact, 1 without one (the
    reason is printed), 2 on an operator error."""
    from arachne.notices.contacts.resolver import default_resolver
    from arachne.store.db import Store

    s = ctx.settings
    with operator_errors():
        store = Store.open(s)
        try:
            resolver = default_resolver(s, store)
            contact = resolver.resolve(host, ip)
            bootstrap = resolver.rdap.bootstrap().info
        finally:
            store.dispose()
    cdn_date = resolver.cdn.date
    if as_json:
        echo_json(
            {**contact.as_json(), "cdn_list_date": cdn_date, "bootstrap": bootstrap.as_json()}
        )
        sys.exit(0 if contact.email else 1)
    rows = [("host", host + (f" (server IP {ip})" if ip else ""))]
    if contact.email:
        rows.append(("contact", f"{contact.email} ({contact.source})"))
    else:
        rows.append(("contact", f"none: {contact.reason or 'no contact found'}"))
    rows += [
        ("provider", contact.provider or "-"),
        ("country", contact.country or "-"),
        ("network", contact.network or "-"),
        ("language", contact.language or "-"),
        ("cdn", f"{contact.cdn or 'none'} (CDN list of {cdn_date})"),
        ("bootstrap", f"{bootstrap.kind} snapshot of {bootstrap.date or '?'} ({bootstrap.source})"),
    ]
    for label, value in rows:
        click.echo(f"{label:<11} {value}")
    click.echo("escalation" + ("" if contact.escalation else "  none"))
    for i, nxt in enumerate(contact.escalation, 1):
        extra = ", ".join(x for x in (nxt.source, nxt.provider, nxt.network) if x)
        click.echo(f"  {i}. {nxt.email or '-'} ({extra})")
    click.echo("chain")
    for i, step in enumerate(contact.chain, 1):
        entity = f"  entity {step.entity}" if step.entity else ""
        click.echo(
            f"  {i:>2}. {step.at}  {step.source:<11} {step.outcome:<16} {step.query}{entity}"
        )
        if step.detail:
            click.echo(f"      {step.detail}")
    sys.exit(0 if contact.email else 1)


@contacts_group.command("update")
@click.option(
    "--bootstrap-url",
    default=None,
    help="Folder URL holding ipv4.json, ipv6.json and dns.json [default: IANA's, "
    "https://data.iana.org/rdap/].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new snapshot's details as JSON.")
@pass_ctx
def update(ctx: Ctx, bootstrap_url: str | None, as_json: bool) -> None:
    """Refresh the RDAP bootstrap (which registry answers for which addresses and TLDs)
    into <data_dir>/rdap-bootstrap/, which the resolver then prefers over the snapshot
    shipped with Arachne (unless rdap_bootstrap is set). Needs network access; on failure
    the previous snapshot stays and the exit code is 2."""
    from arachne.notices.contacts import bootstrap
    from arachne.notices.contacts.http import RdapHttp

    s = ctx.settings
    # The operator names this URL, so a private address is theirs to choose.
    http = RdapHttp(
        timeout=s.rdap_timeout,
        max_bytes=s.rdap_max_bytes,
        rate=s.rdap_rate,
        allow_private=True,
        user_agent=s.agent,
    )
    dest = s.data_dir / bootstrap.UPDATE_DIR
    # Loaded here, not at import: the notices stage costs every CLI command half a second.
    bootstrap_url = bootstrap_url or bootstrap.IANA_BASE_URL
    with operator_errors():
        today = datetime.now(UTC).date().isoformat()
        info = bootstrap.update(dest, bootstrap_url, http.get, today=today)
    if as_json:
        echo_json(info.as_json())
        return
    pubs = ", ".join(f"{k} {v or '?'}" for k, v in info.publications.items())
    click.echo(f"RDAP bootstrap updated in {info.source} from {bootstrap_url} ({pubs})")
