"""PDQ range search at d ≤ 31: Arachne's multi-index index against faiss's multi-hash index.

    .venv/bin/python -m benchmarks.matching [--size 10000000] [--queries N] [--quick]

Data (fixed seed): random 256-bit hashes, 5% of them replaced by a copy of another stored hash
with 1–20 bits flipped (lists hold clusters of near-duplicates). Queries in batches of 1,000:
70% random (misses), 20% stored hashes with 0–31 bits flipped (hits), 10% with 32–48 flipped
(near misses). The baseline is what python-threatexchange uses: faiss
``IndexBinaryMultiHash(256, 16, 16)`` with ``nflip=1``, run on the first ``--faiss-queries``
of the same queries (it is slow at 10M) with the same number of threads. Both must return
exactly the brute-force result sets (else the exit status is 1). The last line printed is one
JSON object of the figures; MB there are MiB.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np

from arachne.matcher.mih import MIHPDQIndex
from benchmarks.common import (
    peak_rss_mb,
    print_result,
    print_table,
    reset_peak_rss,
    rss_mb,
    timed,
)

RADIUS = 31


def flip_bits(rng: np.random.Generator, words: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Copies of (n, 4) uint64 hashes with exactly ``k[i]`` distinct bits flipped in row i."""
    out = words.copy()
    for lo in range(0, len(words), 65_536):  # chunks keep the (n, 256) floats small
        r = rng.random((len(words[lo : lo + 65_536]), 256))
        kk = k[lo : lo + 65_536]
        kth = np.sort(r, axis=1)[np.arange(len(r)), np.maximum(kk, 1) - 1]
        flip = (r <= kth[:, None]) & (kk[:, None] > 0)
        masks = np.packbits(flip, axis=1).view(">u8").astype(np.uint64)
        out[lo : lo + 65_536] ^= masks
    return out


def make_data(rng: np.random.Generator, size: int) -> np.ndarray:
    words = rng.integers(0, 2**64, size=(size, 4), dtype=np.uint64)
    near = rng.choice(size, size // 20, replace=False)
    src = rng.integers(0, size, len(near))
    words[near] = flip_bits(rng, words[src], rng.integers(1, 21, len(near)))
    return words


def make_queries(rng: np.random.Generator, words: np.ndarray, n: int) -> list[str]:
    n_hit, n_near = n // 5, n // 10
    hit = flip_bits(rng, words[rng.integers(0, len(words), n_hit)], rng.integers(0, 32, n_hit))
    near = flip_bits(rng, words[rng.integers(0, len(words), n_near)], rng.integers(32, 49, n_near))
    miss = rng.integers(0, 2**64, size=(n - n_hit - n_near, 4), dtype=np.uint64)
    q = np.concatenate([hit, near, miss])[rng.permutation(n)]
    raw = q.astype(">u8").tobytes()
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def brute_force(words: np.ndarray, query: str) -> set[tuple[int, int]]:
    q = np.frombuffer(bytes.fromhex(query), dtype=">u8").astype(np.uint64)
    dist = np.zeros(len(words), dtype=np.int64)
    for j in range(4):
        dist += np.bitwise_count(words[:, j] ^ q[j])
    hit = np.nonzero(dist <= RADIUS)[0]
    return {(int(i), int(dist[i])) for i in hit}


def batches(queries: list[str], size: int) -> list[list[str]]:
    return [queries[i : i + size] for i in range(0, len(queries), size)]


def run_faiss(
    words: np.ndarray, queries: list[str], batch: int, threads: int
) -> tuple[dict[str, float], list[set[tuple[int, int]]]] | None:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        print("faiss not installed (.venv/bin/pip install faiss-cpu): no baseline")
        return None
    faiss.omp_set_num_threads(threads)
    fig: dict[str, float] = {}
    rss0 = rss_mb()
    codes = words.astype(">u8").view(np.uint8).reshape(-1, 32)
    with timed(fig, "build_s"):
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 1
        index.add(codes)
    fig["rss_mb"] = rss_mb() - rss0
    results: list[set[tuple[int, int]]] = []
    with timed(fig, "query_s"):
        for b in batches(queries, batch):
            x = np.frombuffer(bytes.fromhex("".join(b)), dtype=np.uint8).reshape(-1, 32)
            lims, dist, ids = index.range_search(x, RADIUS + 1)  # faiss: distance < radius
            for i in range(len(b)):
                s, e = lims[i], lims[i + 1]
                results.append(set(zip(ids[s:e].tolist(), dist[s:e].tolist(), strict=True)))
    fig["lookups_per_s"] = len(queries) / fig["query_s"]
    del index, codes
    gc.collect()
    return fig, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=5_000)
    ap.add_argument("--faiss-queries", type=int, default=500)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--check", type=int, default=50, help="queries checked by brute force")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--quick", action="store_true", help="200k hashes: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.size, args.queries, args.faiss_queries = 200_000, 2_000, 2_000
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    words = make_data(rng, args.size)
    queries = make_queries(rng, words, args.queries)
    ids = np.arange(args.size, dtype=np.int64)
    print(
        f"data: {args.size:,} hashes, {args.queries:,} queries ({time.perf_counter() - t0:.1f} s)"
    )

    fig: dict[str, float] = {}
    with timed(fig, "compile_s"):  # numba compile on a fresh checkout, cache load after
        MIHPDQIndex()  # the first index of a process compiles (or loads) every kernel
    print(f"numba compile / cache load: {fig['compile_s']:.2f} s")

    gc.collect()
    rss0 = rss_mb()
    reset_peak_rss()
    index = MIHPDQIndex()
    with timed(fig, "build_s"):
        index.add_words(ids, words)
    gc.collect()
    fig["rss_mb"] = rss_mb() - rss0
    fig["peak_build_mb"] = peak_rss_mb() - rss0
    index_bytes = index.nbytes
    assert index.layout is not None
    print(f"layout: {len(index.layout.widths)} tables, widths {sorted(set(index.layout.widths))}")

    ours: list[list[tuple[int, int]]] = []
    cands = 0
    cpu0 = os.times()
    with timed(fig, "query_s"):
        for b in batches(queries, args.batch):
            ours.extend(index.query(b, RADIUS))
            cands += index.last_candidates
    cpu1 = os.times()
    fig["lookups_per_s"] = args.queries / fig["query_s"]
    # cores actually used while querying: under 2 means other processes took CPU from us
    cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    fig["cores_used"] = cpu_s / fig["query_s"]
    fig["lookups_per_cpu_s"] = args.queries / cpu_s
    hits = sum(1 for r in ours if r)

    # mutations without a rebuild, at full size
    new = make_data(rng, 10_000)
    with timed(fig, "add_10k_s"):
        index.add_words(np.arange(args.size, args.size + len(new)), new)
    with timed(fig, "query_with_buffer_s"):
        for b in batches(queries, args.batch):
            index.query(b, RADIUS)
    with timed(fig, "remove_1k_s"):
        index.remove(rng.choice(args.size, 1_000, replace=False).tolist())
    with timed(fig, "merge_s"):
        index.merge()

    # recall and precision against brute force on a sample (hits and misses alike)
    check = rng.choice(args.queries, min(args.check, args.queries), replace=False)
    found = want = extra = 0
    for i in check:
        truth, got = brute_force(words, queries[i]), set(ours[i])
        found, want, extra = found + len(truth & got), want + len(truth), extra + len(got - truth)
    recall = found / want if want else 1.0
    threads = index._threads
    del index
    gc.collect()

    base = run_faiss(words, queries[: args.faiss_queries], args.batch, threads)
    same = None
    if base is not None:
        bfig, bres = base
        same = all(set(o) == b for o, b in zip(ours, bres, strict=False))

    n_q = args.queries
    rows = [("index", "build s", "lookups/s", "cand/query", "RSS MiB", "exact")]
    if base is not None:
        rows.append(
            (
                "faiss MultiHash 16x16 nflip=1",
                f"{bfig['build_s']:.1f}",
                f"{bfig['lookups_per_s']:,.0f}",
                "",
                f"{bfig['rss_mb']:,.0f}",
                "",
            )
        )
    rows.append(
        (
            f"arachne MIH ({threads} threads)",
            f"{fig['build_s']:.1f}",
            f"{fig['lookups_per_s']:,.0f}",
            f"{cands / n_q:,.0f}",
            f"{fig['rss_mb']:,.0f}",
            f"recall {recall:.3f}, {extra} extra",
        )
    )
    print_table(rows)
    speedup = fig["lookups_per_s"] / bfig["lookups_per_s"] if base is not None else None
    if base is not None:
        print(
            f"speedup vs faiss: {speedup:.1f}x lookups/s, {bfig['build_s'] / fig['build_s']:.1f}x"
            f" build; result sets identical on {min(args.faiss_queries, n_q)} queries: {same}"
        )
    print(
        f"{hits} of {n_q} queries hit; {fig['cores_used']:.2f} cores used while querying; "
        f"index arrays {index_bytes / 2**20:,.0f} MiB, "
        f"peak while building +{fig['peak_build_mb']:,.0f} MB; add 10k {fig['add_10k_s'] * 1e3:.0f}"
        f" ms, then {args.queries / fig['query_with_buffer_s']:,.0f} lookups/s, remove 1k "
        f"{fig['remove_1k_s'] * 1e3:.0f} ms, merge {fig['merge_s']:.1f} s"
    )
    print_result(
        {
            "size": args.size,
            "queries": n_q,
            "threads": threads,
            "build_s": round(fig["build_s"], 2),
            "compile_s": round(fig["compile_s"], 2),
            "lookups_per_s": round(fig["lookups_per_s"]),
            "faiss_lookups_per_s": round(bfig["lookups_per_s"], 1) if base else None,
            "faiss_build_s": round(bfig["build_s"], 1) if base else None,
            "speedup_vs_faiss": round(speedup, 1) if speedup else None,
            "same_results_as_faiss": same,
            "index_bytes": index_bytes,
            "rss_mb": round(fig["rss_mb"]),
            "peak_build_mb": round(fig["peak_build_mb"]),
            "recall": recall,
            "extra_results": extra,
            "candidates_per_query": round(cands / n_q),
            "cores_used": round(fig["cores_used"], 2),
            "lookups_per_cpu_s": round(fig["lookups_per_cpu_s"]),
            "lookups_per_s_10k_buffered": round(args.queries / fig["query_with_buffer_s"]),
            "add_10k_ms": round(fig["add_10k_s"] * 1e3, 1),
            "remove_1k_ms": round(fig["remove_1k_s"] * 1e3, 1),
            "merge_s": round(fig["merge_s"], 2),
        }
    )
    if recall != 1.0 or extra or same is False:
        raise SystemExit(1)  # a smoke run fails loudly when the index is not exact


if __name__ == "__main__":
    main()
