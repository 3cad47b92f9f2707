"""Indexes over known hashes, behind small interfaces so a faster one can be swapped in.

``LinearPDQIndex`` is exact brute force in numpy (popcount over 4 × uint64 words): fine
for the lists a demo or a small hotline holds. The multi-index one for 10M hashes is a
separate class behind the same ``PDQIndex`` protocol.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np


class PDQIndex(Protocol):
    def add(self, ids: Sequence[int], hashes: Sequence[str]) -> None: ...

    def remove(self, ids: Iterable[int]) -> None: ...

    def query(self, hashes: Sequence[str], max_distance: int) -> list[list[tuple[int, int]]]:
        """For each query hash, every (id, distance) with distance ≤ max_distance."""
        ...

    def __len__(self) -> int: ...


def hex_to_words(hashes: Sequence[str]) -> np.ndarray:
    """(n, 4) uint64 big-endian words of 64-hex-digit PDQ hashes."""
    if not hashes:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = bytes.fromhex("".join(hashes))
    return np.frombuffer(raw, dtype=">u8").reshape(-1, 4).astype(np.uint64)


class LinearPDQIndex:
    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._words = np.zeros((0, 4), dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[int], hashes: Sequence[str]) -> None:
        if len(ids) != len(hashes):
            raise ValueError("ids and hashes differ in length")
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._words = np.concatenate([self._words, hex_to_words(hashes)])

    def remove(self, ids: Iterable[int]) -> None:
        keep = ~np.isin(self._ids, np.fromiter(ids, dtype=np.int64))
        self._ids, self._words = self._ids[keep], self._words[keep]

    def query(self, hashes: Sequence[str], max_distance: int) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = []
        if not len(self._ids):
            return [[] for _ in hashes]
        for q in hex_to_words(hashes):
            dist = np.bitwise_count(self._words ^ q).sum(axis=1, dtype=np.int64)
            hit = np.nonzero(dist <= max_distance)[0]
            out.append([(int(self._ids[i]), int(dist[i])) for i in hit])
        return out


class ExactIndex:
    """(kind, value) → entry ids, for the cryptographic digests."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_value.values())

    def add(self, entry_id: int, kind: str, value: str) -> None:
        ids = self._by_value[(kind, value)]
        if entry_id not in ids:
            ids.append(entry_id)

    def remove(self, entry_id: int, kind: str, value: str) -> None:
        ids = self._by_value.get((kind, value))
        if ids and entry_id in ids:
            ids.remove(entry_id)
            if not ids:
                del self._by_value[(kind, value)]

    def lookup(self, kind: str, value: str) -> list[int]:
        return self._by_value.get((kind, value), [])
