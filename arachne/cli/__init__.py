"""The `arachne` command: every operator action, from importing lists to the demo.

One module per group of sub-commands; importing them registers them on the group.
"""

from __future__ import annotations

from arachne.cli import (  # noqa: F401
    campaign_runs,
    campaigns,
    contacts,
    lists,
    notices,
    pipeline,
    results,
    review,
    tools,
    users,
)
from arachne.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="arachne")
