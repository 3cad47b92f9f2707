"""Where the multi-index PDQ index cuts the hash, and how far it probes each table.

Pure Python (no numba): the layout is chosen by a cost model of one query's random memory
accesses, which is what the query time is made of (see ``mih_kernels.query_mih``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

DEFAULT_RADIUS = 31
"""The distance the layout is sized for (PDQ's usual match threshold)."""

_BITS = 256


@dataclass(frozen=True)
class Layout:
    """Substrings as (start bit, width) pairs; the tables built over them."""

    starts: tuple[int, ...]
    widths: tuple[int, ...]

    @classmethod
    def even(cls, m: int, width: int) -> Layout:
        """``m`` substrings of ``width`` bits (trimmed to fit 256), spread over the hash."""
        widths = [min(width, _BITS // m + (i < _BITS % m)) for i in range(m)]
        gaps = _BITS - sum(widths)
        starts, pos = [], 0
        for i, w in enumerate(widths):
            starts.append(pos)
            pos += w + gaps // m + (i < gaps % m)
        return cls(tuple(starts), tuple(widths))


def radii_for(m: int, max_distance: int) -> np.ndarray:
    """Per-table probe radii with sum(r + 1) = max_distance + 1 (−1: table not probed).

    Widest tables (first) take the larger radii; at d=31 over 11 tables that is ten at 2 and
    one at 1, which probes 8% fewer keys than eleven at 2.
    """
    base, extra = divmod(max_distance + 1, m)
    return np.array([base - 1 + (i < extra) for i in range(m)], dtype=np.int64)


def probe_cost(layout: Layout, radii: np.ndarray, n: int) -> float:
    """Expected random memory accesses of one query: probes plus candidates."""
    cost = 0.0
    for w, r in zip(layout.widths, radii, strict=True):
        if r >= 0:
            probes = sum(comb(w, k) for k in range(int(r) + 1))
            cost += probes * (1 + n / 2**w)
    return cost


def choose_layout(n: int, max_distance: int = DEFAULT_RADIUS) -> Layout:
    """Cheapest of 16 tables (radius 1) and 11 tables (radius 2), each at most 2^w ≤ 2n
    offsets wide, so offsets never cost more than twice the posting lists.

    The model puts the switch near 1M hashes; measured on one thread: at 500k, 16 tables
    ran 19.7k lookups/s and 11 × 19 bits 16.4k; at 1M, 9.8k against 15.0k
    for 11 × 20 bits; at 2M, 4.8k against 12.6k.
    """
    wmax = max(8, int(np.floor(np.log2(max(n, 2)))) + 1)
    best: tuple[float, Layout] | None = None
    for m in (16, 11):
        layout = Layout.even(m, min(wmax, 32))
        cost = probe_cost(layout, radii_for(m, max_distance), n)
        if best is None or cost < best[0]:
            best = (cost, layout)
    assert best is not None
    return best[1]


def probe_masks(width: int, radius: int) -> np.ndarray:
    """XOR patterns of every flip of ≤ radius of ``width`` bits."""
    out = [0]
    for k in range(1, radius + 1):
        out.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return np.array(out, dtype=np.int64)
