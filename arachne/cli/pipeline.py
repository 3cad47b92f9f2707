"""`arachne crawl`, `arachne worker` and `arachne run`: the pipeline's processes."""

from __future__ import annotations

import os
import re
import sys
import time

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx


@cli.command()
@click.argument("name")
@pass_ctx
def crawl(ctx: Ctx, name: str) -> None:
    """Crawl campaign NAME and queue every image URL found (workers do the matching).

    Any number of crawl processes, on any machines sharing REDIS_URL and DATABASE_URL,
    work one run of the campaign together. An unfinished run (interrupted, crashed) is
    resumed where it was; after a finished one, a new run starts and re-visits every page.
    """
    from arachne.crawler.pipelines import IMAGE_REFS
    from arachne.crawler.runner import run_crawl
    from arachne.crawler.scope import Scope
    from arachne.queue import stats as st
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.runner import begin_run
    from arachne.store.db import Store
    from arachne.store.runs import end_run
    from arachne.store.summary import get_campaign

    s = ctx.settings
    with operator_errors():
        store = Store.open(s)
        with store.session() as session:
            campaign = get_campaign(session, name)
            seeds, scope = list(campaign.seeds), Scope.from_json(campaign.scope)
        with redis_url_for(s) as url:
            number, new = begin_run(store, redis_from_url(url), name)
            say = "starting" if new else "resuming"
            click.echo(f"{say} run {number} of {name!r}", err=True)
            stats = run_crawl(s, url, name, seeds, scope, run=number)
            live = st.Stats(redis_from_url(url), name).get_run(number)
        interrupted = stats.get("finish_reason") == "shutdown"  # Scrapy caught SIGINT/TERM
        failed = bool(stats.get("arachne/failed"))
        status = "stopped" if interrupted else "failed" if failed else "done"
        with store.session() as session:
            end_run(session, name, number, status, live)
    if stats.get("finish_reason") == "cancelled":
        click.echo(f"run {number} of {name!r} was cancelled by an operator", err=True)
        return
    if interrupted:
        if not ctx.quiet_stop:
            click.echo(
                f"stopped (interrupted): run {number} of {name!r} ended early after "
                f"{stats.get('response_received_count', 0)} responses; `arachne crawl "
                f"{name}` resumes it",
                err=True,
            )
        sys.exit(130)
    click.echo(
        f"crawl of {name!r} (run {number}) finished: "
        f"{stats.get('response_received_count', 0)} responses, "
        f"{stats.get(IMAGE_REFS, 0)} image references",
        err=True,
    )
    if failed:
        click.echo(
            f"error: the crawl of {name!r} could not queue some image references (see the "
            "errors above); fix the cause and crawl again: the run resumes, and URLs already "
            "queued are not queued twice",
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

    with operator_errors(), redis_url_for(ctx.settings) as url:
        run_worker(ctx.settings, redis_from_url(url), burst=burst)


def parse_every(value: str | None) -> float | None:
    """``--every``: a number with s, m, h or d (``24h``, ``90m``); seconds."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value.lower())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{value!r}: give a duration like 30m, 24h or 7d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@cli.command()
@click.argument("name")
@click.option(
    "--workers", type=click.IntRange(1), help="Worker processes (default from settings: 2)."
)
@click.option(
    "--every",
    metavar="DURATION",
    help="Run again this long after each run started (30m, 24h, 7d): each is a new run "
    "that re-visits every page, hosts that served matches first. Ctrl-C ends it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_ctx
def run(ctx: Ctx, name: str, workers: int | None, every: str | None, as_json: bool) -> None:
    """Crawl campaign NAME with workers alongside until every queued image is matched.

    An interrupted run is resumed; after a finished one, a new run starts."""
    from arachne.queue.connection import redis_from_url, redis_url_for
    from arachne.report import print_progress, print_summary
    from arachne.runner import run_campaign, single_run
    from arachne.store.db import Store

    interval = parse_every(every)
    s = ctx.settings
    with operator_errors(), redis_url_for(s) as url:
        store, redis = Store.open(s), redis_from_url(url)
        while True:
            started = time.monotonic()
            with single_run(store, redis, name):
                summary = run_campaign(
                    s, store, redis, url, name, workers=workers, progress=print_progress
                )
            echo_json(summary) if as_json else print_summary(summary)
            if interval is None:
                return
            wait = max(0.0, started + interval - time.monotonic())
            click.echo(f"next run of {name!r} in {wait / 3600:.1f} h", err=True)
            time.sleep(wait)
