"""Multi-index hashing (Norouzi, Punjani & Fleet) for exact PDQ range search at 10M hashes.

How it works: the 256 bits are cut into ``m`` disjoint substrings, each indexed by a table
(CSR: ``offsets`` over every substring value + ``post``, positions sorted by substring). For a
query radius ``d``, each table gets a probe radius ``r_t`` with sum(r_t + 1) > d: by pigeonhole
a hash within ``d`` bits differs from the query in at most ``r_t`` bits of some substring ``t``,
so probing every substring value within ``r_t`` of the query's finds it. Candidates are
verified with the full 256-bit popcount. Results are exact at *any* ``max_distance``: past
31 (what the layout is sized for) the radii grow and queries get slower, and where probing
would cost more than a scan the index scans instead. Nothing is ever approximate.

Layout (``mih_layout``, chosen on each build from the number of hashes): 11 tables probed at
radius 2 (one at radius 1, the slack) from about a million hashes, widths up to 24 bits
(10M: 3 × 24 + 8 × 23, ~2.9k probes and ~2.9k candidates a query); 16 tables at radius 1
below. Substrings need not cover all 256 bits (pigeonhole holds on any subset), so small
indexes use narrow tables whose offsets stay proportional to the data.

Measured at 10M on 2 cores (``python -m benchmarks.matching``): ~15k lookups/s in batches of
1,000, 1.25 GiB of arrays (hashes 305 MiB, ids 76, tables 870), build 3.3 s from parsed
words (7 s from hex strings via ``add``). The compiled loops are in ``mih_kernels``.

Mutations without rebuild:
- ``add`` appends to a side buffer that queries brute-force; when it outgrows ``buffer_limit``
  it is merged into the tables by a rebuild (~4 s at 10M).
- ``remove`` deletes matching ids from the buffer and tombstones them in the tables (a scan
  of the ids: ~15 ms for one id, ~0.1 s for 1,000 at 10M): dead positions are still probed
  but dropped when verified, and compacted away at the next merge, or at once when over a
  quarter of the tables are dead.

Batches are split across threads (the kernels release the GIL). Queries and mutations hold
one lock, so an index can be shared between threads; a forked child (rq's work horse
inherits the parent's index copy-on-write) makes its own threads. Hits of a query come in
no fixed order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from arachne.matcher.index import LinearPDQIndex, PDQIndex, hex_to_words
from arachne.matcher.mih_layout import Layout, choose_layout, probe_cost, probe_masks, radii_for

LINEAR_BELOW = 5_000
"""``make_pdq_index`` picks ``LinearPDQIndex`` below this many expected hashes: the numpy scan
costs ~1 ms per image (8 variants) at 5k, a few % of hashing it, and needs no numba
import or compile; the multi-index one answers in ~0.1 ms from 1k to 100k."""

BUFFER_LIMIT = 16_384
"""Side-buffer size that triggers a merge: each query scans the buffer (~1 ns per hash and
core), a merge rebuilds the tables."""

_PARSE_CHUNK = 1 << 20


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class MIHPDQIndex:
    """Exact PDQ range search by multi-index hashing; see the module docstring."""

    def __init__(
        self,
        *,
        buffer_limit: int = BUFFER_LIMIT,
        threads: int | None = None,
        layout: Layout | None = None,
    ) -> None:
        from arachne.matcher import mih_kernels  # numba: imported only when this index is used

        mih_kernels.warm_up()  # compiles on a fresh checkout (seconds), else loads the cache
        self._k = mih_kernels
        self.buffer_limit = buffer_limit
        self._fixed_layout = layout
        self.layout: Layout | None = None
        self._threads = threads or _threads()
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.last_candidates = 0  # candidates verified by the last query (for benchmarks)
        self.builds = 0  # table (re)builds so far
        # a random access costs about this many sequentially scanned hashes: the tables are
        # scanned instead when probing them would cost more (small indexes, large distances)
        self.scan_ratio = 16.0
        # main tables (rebuilt on merge)
        self._words = np.zeros(0, dtype=np.uint64)  # flat, 4 words per hash
        self._ids = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(0, dtype=np.uint8)
        self._n_dead = 0
        self._offsets = np.zeros(0, dtype=np.uint32)
        self._off_base = np.zeros(0, dtype=np.int64)
        self._post = np.zeros((0, 0), dtype=np.uint32)
        # side buffer (brute-forced)
        self._buf_words = np.zeros(0, dtype=np.uint64)
        self._buf_ids = np.zeros(0, dtype=np.int64)

    def _forked(self) -> None:
        """A forked child (rq's work horse) inherits the pool without its threads, and maybe
        a lock held by a parent thread: give it its own."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._pool = None
            self._lock = threading.RLock()

    def _executor(self) -> ThreadPoolExecutor | None:
        if self._threads > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="mih")
        return self._pool

    # --- size and memory ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids) - self._n_dead + len(self._buf_ids)

    @property
    def nbytes(self) -> int:
        """Bytes of the index's own arrays (hashes, ids, tombstones, tables, buffer)."""
        arrays = (self._words, self._ids, self._dead, self._offsets, self._post)
        return sum(a.nbytes for a in arrays) + self._buf_words.nbytes + self._buf_ids.nbytes

    # --- mutations ----------------------------------------------------------------------------

    def add(self, ids: Sequence[int], hashes: Sequence[str]) -> None:
        if len(ids) != len(hashes):
            raise ValueError("ids and hashes differ in length")
        if any(len(h) != 64 for h in hashes):
            raise ValueError("PDQ hashes are 64 hex digits")
        words = np.empty((len(hashes), 4), dtype=np.uint64)
        for i in range(0, len(hashes), _PARSE_CHUNK):  # bounds the joined hex string
            words[i : i + _PARSE_CHUNK] = hex_to_words(hashes[i : i + _PARSE_CHUNK])
        self._add(np.array(ids, dtype=np.int64).reshape(-1), words)

    def add_words(self, ids: Sequence[int] | np.ndarray, words: np.ndarray) -> None:
        """``add`` for hashes already parsed: (n, 4) uint64 as from ``hex_to_words``. Bulk
        loads skip building 10M Python strings this way."""
        words = np.array(words, dtype=np.uint64, order="C")  # a copy: the caller keeps theirs
        ids_arr = np.array(ids, dtype=np.int64).reshape(-1)
        if words.ndim != 2 or words.shape[1] != 4 or len(words) != len(ids_arr):
            raise ValueError("words must be (len(ids), 4) uint64")
        self._add(ids_arr, words)

    def _add(self, ids: np.ndarray, words: np.ndarray) -> None:
        self._forked()
        with self._lock:
            if len(self._buf_ids) + len(ids) > self.buffer_limit:
                self._merge(words.ravel(), ids)
            else:
                self._buf_words = np.concatenate([self._buf_words, words.ravel()])
                self._buf_ids = np.concatenate([self._buf_ids, ids])

    def remove(self, ids: Iterable[int]) -> None:
        gone = np.unique(np.fromiter(ids, dtype=np.int64))
        if not len(gone):
            return
        self._forked()
        with self._lock:
            keep = ~np.isin(self._buf_ids, gone)
            self._buf_ids = self._buf_ids[keep]
            self._buf_words = self._buf_words.reshape(-1, 4)[keep].ravel()
            if len(self._ids):
                self._n_dead += self._k.mark_dead(self._ids, self._dead, gone)
                if self._n_dead * 4 > len(self._ids):
                    self._merge()

    def merge(self) -> None:
        """Fold the side buffer into the tables and drop tombstones now (a rebuild)."""
        self._forked()
        with self._lock:
            self._merge()

    def _merge(
        self, new_words: np.ndarray | None = None, new_ids: np.ndarray | None = None
    ) -> None:
        words_parts, id_parts = [], []
        if self._n_dead:
            live = self._dead == 0
            words_parts.append(self._words.reshape(-1, 4)[live].ravel())
            id_parts.append(self._ids[live])
        else:
            words_parts.append(self._words)
            id_parts.append(self._ids)
        words_parts.append(self._buf_words)
        id_parts.append(self._buf_ids)
        if new_words is not None and new_ids is not None:
            words_parts.append(new_words)
            id_parts.append(new_ids)
        # drop the old tables first, so that peak memory holds one set of tables
        self._offsets = np.zeros(0, dtype=np.uint32)
        self._post = np.zeros((0, 0), dtype=np.uint32)
        self._words, self._ids = _join(words_parts), _join(id_parts)
        self._buf_words = np.zeros(0, dtype=np.uint64)
        self._buf_ids = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(len(self._ids), dtype=np.uint8)
        self._n_dead = 0
        self._build()

    def _build(self) -> None:
        n = len(self._ids)
        self.builds += 1
        if n == 0:
            self.layout = None
            return
        if n >= 2**32:
            raise ValueError("positions are uint32: at most 2^32 - 1 hashes")
        layout = self._fixed_layout or choose_layout(n)
        self.layout = layout
        m = len(layout.widths)
        sizes = [(1 << w) + 1 for w in layout.widths]
        self._off_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._offsets = np.empty(sum(sizes), dtype=np.uint32)
        self._post = np.empty((m, n), dtype=np.uint32)

        def one(t: int) -> None:
            b = self._off_base[t]
            self._k.build_table(
                self._words,
                n,
                layout.starts[t],
                layout.widths[t],
                self._offsets[b : b + sizes[t]],
                self._post[t],
            )

        pool = self._executor()
        if pool is not None:
            list(pool.map(one, range(m)))
        else:
            for t in range(m):
                one(t)

    # --- queries ------------------------------------------------------------------------------

    def query(self, hashes: Sequence[str], max_distance: int) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = [[] for _ in hashes]
        if not hashes or max_distance < 0:
            return out
        q = hex_to_words(hashes).ravel()
        self._forked()
        with self._lock:
            self.last_candidates = 0
            if len(self._ids):
                self._collect(out, self._ids, self._run_main(q, max_distance))
            if len(self._buf_ids):
                n = len(self._buf_ids)
                dead = np.zeros(n, dtype=np.uint8)
                args = (self._buf_words, n, dead, max_distance)
                hits = self._parallel(self._k.query_linear, q, args)
                self._collect(out, self._buf_ids, hits)
        return out

    def _run_main(self, q: np.ndarray, max_distance: int) -> tuple[np.ndarray, ...]:
        assert self.layout is not None
        m = len(self.layout.widths)
        radii = radii_for(m, max_distance)
        n = len(self._ids)
        if probe_cost(self.layout, radii, n) * self.scan_ratio > n:
            return self._parallel(
                self._k.query_linear, q, (self._words, n, self._dead, max_distance)
            )
        masks, mask_base = self._probe_masks(radii)
        args = (
            self._words,
            self._dead,
            self._offsets,
            self._off_base,
            self._post,
            np.array(self.layout.starts, dtype=np.int64),
            np.array(self.layout.widths, dtype=np.int64),
            radii,
            masks,
            mask_base,
            max_distance,
        )
        return self._parallel(self._k.query_mih, q, args)

    def _probe_masks(self, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.layout is not None
        key = (hash(self.layout), hash(radii.tobytes()))
        if key not in self._masks:
            parts = [
                probe_masks(w, int(r)) if r >= 0 else np.zeros(0, dtype=np.int64)
                for w, r in zip(self.layout.widths, radii, strict=True)
            ]
            base = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
            self._masks[key] = (np.concatenate(parts).astype(np.int64), base)
        return self._masks[key]

    def _parallel(self, kernel, q: np.ndarray, args: tuple) -> tuple[np.ndarray, ...]:
        """Run ``kernel`` on slices of the batch, one per thread; (query, position, distance)
        arrays of the hits."""
        nq = len(q) // 4
        scratch = kernel is self._k.query_mih
        pool = self._executor()
        if pool is None or nq < 2:
            parts = [_drive(kernel, q, args, scratch)]
            starts = [0]
        else:
            step = -(-nq // self._threads)
            starts = list(range(0, nq, step))
            futures = [
                pool.submit(_drive, kernel, q[4 * s : 4 * (s + step)], args, scratch)
                for s in starts
            ]
            parts = [f.result() for f in futures]
        self.last_candidates += sum(c for _, c in parts)
        for (h, _), s in zip(parts, starts, strict=True):
            h[:, 0] += s
        hits = np.concatenate([h for h, _ in parts])
        return hits[:, 0], hits[:, 1], hits[:, 2]

    @staticmethod
    def _collect(
        out: list[list[tuple[int, int]]], ids: np.ndarray, hits: tuple[np.ndarray, ...]
    ) -> None:
        qi, pos, dist = hits
        for q, i, d in zip(qi.tolist(), ids[pos].tolist(), dist.tolist(), strict=True):
            out[q].append((i, d))


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate, without a copy when only one part has data (bulk loads at 10M)."""
    full = [p for p in parts if len(p)]
    if len(full) == 1:
        return full[0]
    return np.concatenate(parts)


def _drive(kernel, q: np.ndarray, args: tuple, scratch: bool) -> tuple[np.ndarray, int]:
    """Call a kernel until every query is done, growing its output rows (and candidate
    scratch) when a query does not fit. Returns the (query, position, distance) rows and the
    candidates verified."""
    nq = len(q) // 4
    out = np.empty((max(1024, 4 * nq), 3), dtype=np.int64)
    buf = (np.empty(1 << 15, np.int64), np.empty(1 << 15, np.int64)) if scratch else ()
    parts, cands, start = [], 0, 0
    while start < nq:
        n, nxt, c, need = kernel(q, start, out, *buf, *args)
        parts.append(out[:n].copy())
        cands += c
        if need:
            buf = (np.empty(need, np.int64), np.empty(need, np.int64))
        elif nxt == start:  # one query has more hits than rows
            out = np.empty((2 * len(out), 3), dtype=np.int64)
        start = nxt
    return (np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)), cands


def make_pdq_index(expected_size: int) -> PDQIndex:
    """The index for a list of about ``expected_size`` PDQ hashes: linear scan when small,
    multi-index hashing otherwise (both exact at every distance)."""
    if expected_size < LINEAR_BELOW:
        return LinearPDQIndex()
    return MIHPDQIndex()
