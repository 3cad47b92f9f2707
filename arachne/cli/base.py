"""The `arachne` command group and what every sub-command shares: settings, errors, JSON."""

from __future__ import annotations

import json
import logging
import signal
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
from arachne.settings import Settings, load_settings

log = logging.getLogger("arachne")


class Ctx:
    def __init__(self, overrides: dict[str, Any], quiet_stop: bool = False) -> None:
        self.overrides = overrides
        self.quiet_stop = quiet_stop
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self.settings_with()
        return self._settings

    def settings_with(self, **extra: Any) -> Settings:
        """Settings with these command options on top; a bad setting exits here, before the
        command has started anything."""
        with operator_errors():
            return load_settings(**self.overrides, **extra)


pass_ctx = click.make_pass_decorator(Ctx)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


def _quiet_stop() -> bool:
    click_ctx = click.get_current_context(silent=True)
    obj = click_ctx.find_object(Ctx) if click_ctx is not None else None
    return obj is not None and obj.quiet_stop


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated


@contextmanager
def operator_errors() -> Iterator[None]:
    """Operator-facing errors: one clear line on stderr and exit code 2, no traceback.

    An interruption (Ctrl-C, SIGTERM) is one line too, once the ``with`` blocks inside
    have stopped what they started (children, the embedded Valkey).
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        if not _quiet_stop():
            click.echo(f"stopped ({'SIGTERM' if terminated else 'interrupted'})", err=True)
        sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))
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
# Children of `arachne run`: it reports a stop itself, one line for the run.
@click.option("--quiet-stop", is_flag=True, hidden=True)
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: bool, quiet_stop: bool) -> None:
    """Arachne: crawl websites for known abuse imagery, match it against hash lists,
    and notify hosts until it is removed.

    Settings come from arachne.toml (or the file in ARACHNE_CONFIG), ARACHNE_* environment
    variables, REDIS_URL and DATABASE_URL. With neither URL set, Arachne runs on one
    machine with an embedded Valkey and a SQLite file in the data directory.
    """
    # SIGTERM's default kills the process on the spot: no `finally`, so children and the
    # embedded Valkey would be orphaned. (rq, Scrapy and aiohttp install their own.)
    signal.signal(signal.SIGTERM, _raise_terminated)
    # A process started in the background by a script inherits SIGINT *ignored*, and Python
    # then installs no KeyboardInterrupt: Ctrl-C (or `arachne run` stopping its children)
    # would be lost until rq or Scrapy install their own handlers, seconds into start-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    ctx.obj = Ctx(overrides, quiet_stop)
