"""Human output for long-running commands: a progress line and the summary table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from arachne.queue import stats as st
from arachne.queue.connection import redis_from_settings
from arachne.settings import Settings


def live_stats(settings: Settings, name: str) -> dict[str, int] | None:
    """The campaign's live counters, or None when no Redis is reachable (store snapshot used)."""
    try:
        return st.Stats(redis_from_settings(settings), name).get_all() or None
    except Exception:  # not configured, not running, unreachable: the snapshot stands in
        return None


def live_run_stats(settings: Settings, name: str) -> Callable[[int], dict[str, int] | None]:
    """``number -> that run's live counters`` (None where Redis has none or is not reachable)."""
    try:
        redis = redis_from_settings(settings)
    except Exception:  # not configured, not running: the stored snapshots stand in
        redis = None
    return st.run_reader(redis, name)


def print_progress(p: dict[str, Any]) -> None:
    live, queue = p["live"], p["queue"]
    line = (
        f"[{int(p['elapsed']) // 60:02d}:{int(p['elapsed']) % 60:02d}] "
        f"{'crawling' if p['crawling'] else 'matching'} | "
        f"pages {live.get(st.PAGES_CRAWLED, 0)} | "
        f"images queued {live.get(st.IMAGES_QUEUED, 0)} done {live.get(st.IMAGES_DONE, 0)} | "
        f"matches {live.get(st.IMAGES_MATCHED, 0)} | "
        f"jobs waiting {queue.queued} running {queue.running}"
        + (f" retrying {queue.retrying}" if queue.retrying else "")
        + (f" failed {queue.failed}" if queue.failed else "")
    )
    if sys.stderr.isatty():
        click.echo("\r" + line.ljust(110), nl=False, err=True)
    elif int(p["elapsed"]) % 5 == 0:
        click.echo(line, err=True)


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    errors = s["errors"]
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(errors["by_reason"].items()))
    notices = s["notices"]
    notice_detail = ", ".join(f"{k} {v}" for k, v in notices.items() if k != "total")
    return [
        ("campaign", f"{s['campaign']} ({s['status']})"),
        *(
            [("run", f"{s['run']['number']} ({s['run']['status']}) of {len(s['runs'])}")]
            if s.get("run")
            else []
        ),
        ("pages crawled", str(s["pages"])),
        *(
            [("page errors", _with_reasons(s["page_errors"], s["page_errors_by_reason"]))]
            if s.get("page_errors")
            else []
        ),
        ("images found", str(s["images_found"])),
        ("images queued", str(s["images_queued"])),
        ("images fetched", str(s["images_fetched"])),
        ("images hashed", str(s["images_hashed"])),
        (
            "matched URLs",
            f"{s['matches']['urls']} (exact {s['matches']['exact']}, near {s['matches']['near']})",
        ),
        ("hosts with matches", str(s["hosts_with_matches"])),
        ("notices", f"{notices['total']}" + (f" ({notice_detail})" if notice_detail else "")),
        ("errors", f"{errors['total']}" + (f" ({by_reason})" if by_reason else "")),
    ]


def _with_reasons(total: int, by_reason: dict[str, int]) -> str:
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items()))
    return f"{total}" + (f" ({detail})" if detail else "")


def print_summary(s: dict[str, Any]) -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)
    rows = summary_rows(s)
    width = max(len(k) for k, _ in rows)
    click.echo("-" * (width + 40))
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    click.echo("-" * (width + 40))
