"""Retroactive matching at scale (issue 9 §2): a list against every stored image's queries.

    .venv/bin/python -m benchmarks.rematch [--images N] [--entries M] [--quick]

A SQLite store (the default) holds N images (default 1,000,000), each with 9 packed PDQ
queries (8 dihedral + up2, random 256-bit hashes: what the store keeps, without hashing a
million pictures) and one sighting. A list of M PDQ entries (default 100,000) is imported,
1% of them planted near stored queries (distances 0-40, around the threshold), and
rematched (``rematch_now``, what ``arachne rematch --wait`` runs). Then a 1-entry update.

Checks: for a sample of entries, the matches recorded equal a brute-force scan of every
stored query at the list's threshold (the baseline, timed per entry). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from arachne.matcher.index import hex_to_words
from arachne.matcher.variants import VERSION
from arachne.queue.rematch import Selection, rematch_now
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import HashEntry, Match, Sighting
from benchmarks.common import peak_rss_mb, print_result, print_table, reset_peak_rss

QUERIES = 9  # 8 dihedral + up2
THRESHOLD = 31


def fill_store(store: Store, images: int, rng: np.random.Generator) -> np.ndarray:
    """N images with random packed queries and a sighting each; their words (N*9, 4)."""
    with store.session() as session:
        create_campaign(session, "bench", ["http://bench.example/"], {})
    raw = rng.integers(0, 256, size=(images, QUERIES * 32), dtype=np.uint8)
    header = bytes([VERSION, 1 | 2, 90, 0])
    chunk = 50_000
    with store.engine.begin() as conn:
        for lo in range(0, images, chunk):
            rows = []
            for i in range(lo, min(lo + chunk, images)):
                digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
                blob = header + raw[i].tobytes()
                rows.append((digest, digest[:32], digest[:40], 1000, "2026-12-07", blob))
            conn.exec_driver_sql(
                "INSERT INTO images (sha256, md5, sha1, size, first_seen_at, pdq_queries) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        conn.exec_driver_sql(
            "INSERT INTO sightings (campaign_id, url_key, image_url, host, image_id, "
            "fetched_at, headers, run) SELECT 1, substr(sha256, 1, 40), "
            "'http://bench.example/img/' || id || '.jpg', 'bench.example', id, "
            "'2026-12-07', '{}', 1 FROM images"
        )
    return raw.view(">u8").reshape(-1, 4).astype(np.uint64)


def planted_list(
    words: np.ndarray, entries: int, rng: np.random.Generator, most_flips: int = 40
) -> list[str]:
    """M hex hashes: 99% random, 1% a stored query with 0-``most_flips`` bits flipped."""
    planted = max(1, entries // 100)
    hexes = [row.astype(">u8").tobytes().hex() for row in rng.integers(
        0, 2**63, size=(entries - planted, 4), dtype=np.uint64)]  # fmt: skip
    for _ in range(planted):
        bits = np.unpackbits(words[rng.integers(len(words))].astype(">u8").view(np.uint8))
        flip = rng.choice(256, size=int(rng.integers(0, most_flips + 1)), replace=False)
        bits[flip] ^= 1
        hexes.append(np.packbits(bits).tobytes().hex())
    return hexes


def brute(words: np.ndarray, entry: str) -> set[int]:
    """Image ids (1-based rows) within THRESHOLD of ``entry`` in any query: the baseline."""
    dist = np.bitwise_count(words ^ hex_to_words([entry])[0]).sum(axis=1)
    return {int(i) // QUERIES + 1 for i in np.flatnonzero(dist <= THRESHOLD)}


def recorded(store: Store, entry_ids: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {e: set() for e in entry_ids}
    with store.session() as session:
        for entry_id, image_id in session.execute(
            select(Match.entry_id, Sighting.image_id)
            .join(Sighting, Sighting.id == Match.sighting_id)
            .where(Match.entry_id.in_(entry_ids))
        ):
            out[entry_id].add(image_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100k images, 10k entries")
    args = parser.parse_args()
    images, entries = (100_000, 10_000) if args.quick else (args.images, args.entries)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = Store.open(settings)
        started = time.perf_counter()
        words = fill_store(store, images, rng)
        fill_s = time.perf_counter() - started
        hexes = planted_list(words, entries, rng)
        path = Path(tmp) / "big.txt"
        path.write_text("".join(f"pdq {h}\n" for h in hexes))
        import_list(store, "big", path, threshold=THRESHOLD)

        reset_peak_rss()
        started = time.perf_counter()
        total = rematch_now(store, settings, Selection("big", 1))
        full_s = time.perf_counter() - started
        # This process, and the forked processes that did the ranges (KiB on Linux).
        peak = max(peak_rss_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)

        # Exact against brute force on a sample: the planted entries and as many random.
        with store.session() as session:
            ids = dict(session.execute(select(HashEntry.value, HashEntry.id)).all())
        sample = hexes[-10:] + hexes[:10]
        started = time.perf_counter()
        expected = {ids[h]: brute(words, h) for h in sample}
        brute_s = (time.perf_counter() - started) / len(sample)
        got = recorded(store, list(expected))
        exact = got == expected
        hits = sum(len(v) for v in expected.values())

        # A 1-entry update: a new version holding one more (planted) entry.
        one = planted_list(words, 1, rng, most_flips=20)[0]
        path.write_text(path.read_text() + f"pdq {one}\n")
        import_list(store, "big", path)
        started = time.perf_counter()
        update = rematch_now(store, settings, Selection("big", 2))
        update_s = time.perf_counter() - started
        store.dispose()

    rows_per_s = images * QUERIES / full_s
    print_table(
        [
            ("rematch", "seconds", "note"),
            ("fill the store (setup)", f"{fill_s:.1f}", f"{images:,} images, 1 sighting each"),
            (f"{entries:,} PDQ entries", f"{full_s:.1f}",
             f"{total['matches']} matches; {rows_per_s:,.0f} stored queries/s; goal <= 300"),
            ("brute force, 1 entry (baseline)", f"{brute_s:.2f}",
             f"all {images * QUERIES:,} queries: {brute_s * entries / full_s:.0f}x slower "
             "for the whole list"),
            ("1-entry update", f"{update_s:.2f}", f"{update['matches']} match(es); goal <= 2"),
        ]
    )  # fmt: skip
    print(f"sample of {len(sample)} entries, {hits} matches: exact = {exact}; peak {peak:.0f} MB")
    print_result(
        {
            "images": images,
            "entries": entries,
            "queries_per_image": QUERIES,
            "bytes_per_image": 4 + 32 * QUERIES,
            "rematch_seconds": round(full_s, 1),
            "rematch_matches": total["matches"],
            "brute_force_seconds_per_entry": round(brute_s, 3),
            "speedup_vs_brute_force": round(brute_s * entries / full_s, 1),
            "exact_on_sample": exact,
            "sample_matches": hits,
            "peak_rss_mb": round(peak),
            "update_1_entry_seconds": round(update_s, 2),
            "update_matches": update["matches"],
        }
    )


if __name__ == "__main__":
    main()
