"""Small helpers shared by the benchmark scripts: timing, memory, printing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux /proc)."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak resident memory since start or the last ``reset_peak_rss``, in MiB."""
    return _status_kb("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Start a new peak (Linux ≥ 4.0; silently a no-op where not allowed)."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Wall-clock seconds of the block, stored as ``into[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        into[key] = time.perf_counter() - start


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_result(figures: dict[str, object]) -> None:
    """The machine-readable last line every benchmark ends with."""
    print(json.dumps(figures, sort_keys=True), flush=True)
