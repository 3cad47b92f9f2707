"""`arachne hash`, `arachne dashboard`, `arachne demo`."""

from __future__ import annotations

from pathlib import Path

import click

from arachne.cli.base import Ctx, cli, echo_json, operator_errors, pass_ctx


@cli.command("hash")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option(
    "--reference",
    is_flag=True,
    help="Use the reference path (full decode, pdqhash) instead of the workers' fast path.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
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
        echo_json(out)
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
    from arachne.store.users import any_users

    extra = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v}
    settings = ctx.settings_with(**extra)
    scheme = "https" if settings.dashboard_tls_cert else "http"
    click.echo(
        f"dashboard on {scheme}://{settings.dashboard_host}:{settings.dashboard_port}/", err=True
    )
    with operator_errors():
        if not any_users(settings):
            click.echo(
                "no console user yet: nothing is shown until you create one with "
                "`arachne users add NAME --role admin`",
                err=True,
            )
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

    with operator_errors():
        summary = run_demo(ctx.settings, keep=keep, serve=serve, quiet=as_json)
    if as_json:
        echo_json(summary)
