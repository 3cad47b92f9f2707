"""The `arachne` command: every operator action, from importing lists to the demo."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

from arachne import __version__
from arachne.errors import ArachneError
from arachne.settings import Settings

log = logging.getLogger("arachne")


class Ctx:
    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings(**self.overrides)
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


@contextmanager
def _errors() -> Iterator[None]:
    """Operator-facing errors: one clear line on stderr and exit code 2, no traceback."""
    try:
        yield
    except ArachneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except RedisConnectionError as exc:
        click.echo(f"error: cannot reach Redis ({exc}); check REDIS_URL", err=True)
        sys.exit(2)
    except SQLAlchemyOperationalError as exc:
        click.echo(f"error: the store is unavailable ({exc.orig}); check DATABASE_URL", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="arachne")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Embedded Valkey + SQLite location [ARACHNE_DATA_DIR; default ./arachne-data].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: bool) -> None:
    """Arachne: crawl websites for known abuse imagery, match it against hash lists,
    and notify hosts until it is removed.

    Settings come from arachne.toml (or the file in ARACHNE_CONFIG), ARACHNE_* environment
    variables, REDIS_URL and DATABASE_URL. With neither URL set, Arachne runs on one
    machine with an embedded Valkey and a SQLite file in the data directory.
    """
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Filter at the handler too: Scrapy re-configures logger levels to DEBUG when it starts.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    ctx.obj = Ctx(overrides)


# ---------------------------------------------------------------- lists


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

    with _errors():
        summaries = list_summaries(Store.open(ctx.settings))
    if as_json:
        _echo_json(summaries)
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
@click.option("--format", "fmt", help="Force a format (default: detected from the file).")
@click.option("--kind", help="Hash kind for bare 64-hex lines: sha256 or pdq.")
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
@click.option("--json", "as_json", is_flag=True)
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

    with _errors():
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
        _echo_json(data)
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


# ---------------------------------------------------------------- campaigns


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
@pass_ctx
def campaign_create(
    ctx: Ctx,
    name: str,
    seeds: tuple[str, ...],
    hosts: tuple[str, ...],
    max_depth: int | None,
    max_pages: int | None,
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
        )
    except ValueError as exc:  # no host, malformed IPv6 literal, bad port
        raise click.BadParameter(str(exc), param_hint="--seed") from None
    with _errors(), Store.open(s).session() as session:
        create_campaign(session, name, list(seeds), scope.as_json())
    click.echo(
        f"created campaign {name!r}: {len(seeds)} seed(s), hosts {sorted(scope.allowed_hosts)}, "
        f"depth ≤ {scope.max_depth}, pages ≤ {scope.max_pages}"
    )


@campaign_group.command("list")
@click.option("--json", "as_json", is_flag=True)
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
        _echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:24} {r['status']:10} {', '.join(r['seeds'])}")


# ---------------------------------------------------------------- crawl / work / run


@cli.command()
@click.argument("name")
@pass_ctx
def crawl(ctx: Ctx, name: str) -> None:
    """Crawl campaign NAME and queue every image URL found (workers do the matching)."""
    from arachne.crawler.runner import run_crawl
    from arachne.crawler.scope import Scope
    from arachne.queue.connection import redis_url_for
    from arachne.store.db import Store
    from arachne.store.summary import get_campaign

    s = ctx.settings
    with _errors():
        with Store.open(s).session() as session:
            campaign = get_campaign(session, name)
            seeds, scope = list(campaign.seeds), Scope.from_json(campaign.scope)
        with redis_url_for(s) as url:
            stats = run_crawl(s, url, name, seeds, scope)
    click.echo(
        f"crawl of {name!r} finished: {stats.get('response_received_count', 0)} responses, "
        f"{stats.get('item_scraped_count', 0)} image references",
        err=True,
    )
    if stats.get("arachne/failed"):
        click.echo(
            f"error: the crawl of {name!r} could not queue some image references (see the "
            "errors above); fix the cause and crawl again (URLs already queued are not "
            "queued twice)",
            err=True,
        )
        sys.exit(1)


@cli.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@pass_ctx
def worker(ctx: Ctx, burst: bool) -> None:
    """Run a matching worker: fetch, hash and match queued image batches."""
    # One BLAS thread per worker: the workers already use every core (set before numpy loads).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.queue.worker import run_worker

    with _errors(), redis_url_for(ctx.settings) as url:
        run_worker(ctx.settings, redis_from_url(url), burst=burst)


@cli.command()
@click.argument("name")
@click.option(
    "--workers", type=click.IntRange(1), help="Worker processes (default from settings: 2)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_ctx
def run(ctx: Ctx, name: str, workers: int | None, as_json: bool) -> None:
    """Crawl campaign NAME with workers alongside until every queued image is matched."""
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.report import print_progress, print_summary
    from arachne.runner import run_campaign
    from arachne.store.db import Store

    s = ctx.settings
    with _errors(), redis_url_for(s) as url:
        summary = run_campaign(
            s,
            Store.open(s),
            redis_from_url(url),
            url,
            name,
            workers=workers,
            progress=print_progress,
        )
    _echo_json(summary) if as_json else print_summary(summary)


# ---------------------------------------------------------------- results


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def matches(ctx: Ctx, name: str, as_json: bool) -> None:
    """Matched image URLs of campaign NAME (URLs and hashes, never images)."""
    from arachne.store.db import Store
    from arachne.store.summary import campaign_matches

    with _errors(), Store.open(ctx.settings).session() as session:
        rows = campaign_matches(session, name)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        dist = f" d={r['distance']}" if r["distance"] is not None else ""
        click.echo(f"{r['kind']:5}{dist:6} {r['url']}  [{', '.join(r['lists'])}]")
    click.echo(f"{len(rows)} matched URL(s)", err=True)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stats(ctx: Ctx, name: str, as_json: bool) -> None:
    """Figures of campaign NAME: pages, images, matches, notices, errors."""
    from arachne.report import live_stats, print_summary
    from arachne.store.db import Store
    from arachne.store.summary import campaign_summary

    s = ctx.settings
    with _errors(), Store.open(s).session() as session:
        summary = campaign_summary(session, name, live_stats(s, name))
    _echo_json(summary) if as_json else print_summary(summary)


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
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def notices_send(ctx: Ctx, name: str, outbox: Path | None, as_json: bool) -> None:
    """Send one notice per host for matched URLs not yet reported (safe to repeat)."""
    from arachne.notices.deliver import OutboxNotifier
    from arachne.notices.send import send_notices
    from arachne.store.db import Store

    notifier = OutboxNotifier(outbox) if outbox else None
    with _errors():
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
        _echo_json(data)
        return
    for o in report.notices:
        click.echo(f"{o.status:12} {o.host:30} {o.reference or ''}")
    click.echo(
        f"{report.sent} sent, {report.no_contact} without contact, "
        f"{report.failed} failed, {report.already_sent} already sent"
    )


# ---------------------------------------------------------------- tools


@cli.command("hash")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option(
    "--reference",
    is_flag=True,
    help="Use the reference path (full decode, pdqhash) instead of the workers' fast path.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def hash_cmd(ctx: Ctx, files: tuple[Path, ...], reference: bool, as_json: bool) -> None:
    """MD5, SHA-1, SHA-256, PDQ and PDQ quality of image FILES, as the workers compute them
    (read in memory only). Compare with --reference on your own files."""
    from arachne.matcher.hashing import hash_image_bytes

    out = []
    for path in files:
        h = hash_image_bytes(
            path.read_bytes(), max_pixels=ctx.settings.max_image_pixels, reference=reference
        )
        row = {"file": str(path), "path": "reference" if reference else "fast", **h.as_json()}
        if h.trim_box:
            row["trimmed_pdq"] = h.pdq_trimmed_variants[0]
            row["trim_box"] = list(h.trim_box)
        out.append(row)
    if as_json:
        _echo_json(out)
        return
    for r in out:
        pdq = f"pdq {r['pdq']} q{r['quality']}" if r["pdq"] else f"error {r['error']}"
        click.echo(f"{r['file']}: md5 {r['md5']} {pdq}")


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8377).")
@pass_ctx
def dashboard(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Serve the web dashboard and JSON API."""
    from arachne.dashboard.app import run_dashboard

    extra = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v}
    settings = Settings(**ctx.overrides, **extra)
    click.echo(
        f"dashboard on http://{settings.dashboard_host}:{settings.dashboard_port}/", err=True
    )
    with _errors():
        run_dashboard(settings)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--keep", is_flag=True, help="Keep earlier demo data (default: start clean).")
@click.option("--serve", is_flag=True, help="Keep the demo site and dashboard up afterwards.")
@pass_ctx
def demo(ctx: Ctx, as_json: bool, keep: bool, serve: bool) -> None:
    """Run the whole pipeline on a benign demo website served on loopback.

    Starts an embedded Valkey and SQLite store under <data-dir>/demo, the demo site on
    127.0.0.2-4, a local SMTP server, imports a demo list, crawls with 2 workers, sends
    notices, and prints a summary.
    """
    from arachne.demo.run import run_demo

    with _errors():
        summary = run_demo(ctx.settings, keep=keep, serve=serve, quiet=as_json)
    if as_json:
        _echo_json(summary)


def main() -> None:
    cli(prog_name="arachne")
