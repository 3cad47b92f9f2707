"""The `arachne` command group and what every sub-command shares: settings, errors, JSON."""

from __future__ import annotations

import json
import logging
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


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


@contextmanager
def operator_errors() -> Iterator[None]:
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
