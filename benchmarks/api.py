"""The match API under load: ``POST /api/match`` against a 1M-hash bank, over real HTTP.

    .venv/bin/python -m benchmarks.api [--size 1000000] [--seconds 8] [--quick]

Bank (fixed seed): ``--size`` random PDQ hashes, 5% of them near copies of others
(benchmarks/matching.py's data), plus ``size / 100`` MD5 and as many SHA-256 entries, written
as a text list and imported into a SQLite store with ``import_list`` (the real path, timed).
The dashboard app (``create_app``: auth, audit, error middlewares and all) is served by
aiohttp's ``AppRunner`` on 127.0.0.1 in a child process. It loads the bank from the store
with its first request, sent as soon as it is up (a server left idle would start the load
itself ``match_api.LOAD_AFTER_STARTUP`` seconds after startup). Requests carry a viewer
token.

Queries: 80% PDQ (20% stored hashes with 0-31 bits flipped: hits, 10% with 32-48: near
misses, 70% random), 10% MD5 and 10% SHA-256 (half of each in the bank). Two loads, each for
``--seconds``: single-hash requests from ``--clients`` concurrent aiohttp clients, and
1,000-hash requests from ``--batch-clients``; then, as a floor, single requests to an empty
handler behind the same middlewares (headers, errors, auth), added to the app for this run.

The baseline, measured in this run, is the same matching called in-process without HTTP
(``match_api.match_hashes`` on an index this process loads from the same store); the HTTP
answers of one batch must equal it. On a 2-core machine the client process competes with
the server for the CPUs, so each load also reports the CPU the server spent per request
(all its threads, from /proc): what a request costs, whatever else runs beside it. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import print_result, print_table
from benchmarks.matching import make_data, make_queries

BATCH = 1_000
EMPTY_PATH = "/api/bench-empty"


def bench_settings(data_dir: Path) -> Any:
    from arachne.settings import Settings

    # No Redis: /api/match never reads it, and the embedded one is only looked for on use.
    return Settings(data_dir=data_dir, redis_url=None, database_url=None)


def hexes(words: np.ndarray) -> list[str]:
    raw = words.astype(">u8").tobytes().hex()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


def random_hex(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    raw = rng.integers(0, 256, size=n * nbytes, dtype=np.uint8).tobytes().hex()
    step = 2 * nbytes
    return [raw[i : i + step] for i in range(0, len(raw), step)]


def make_bank(
    rng: np.random.Generator, size: int, path: Path
) -> tuple[list[str], list[str], np.ndarray]:
    """Write the list file; (md5 entries, sha256 entries, PDQ words)."""
    words = make_data(rng, size)
    md5s, sha256s = random_hex(rng, size // 100, 16), random_hex(rng, size // 100, 32)
    with path.open("w") as out:
        out.writelines(f"pdq {h}\n" for h in hexes(words))
        out.writelines(f"md5 {h}\n" for h in md5s)
        out.writelines(f"sha256 {h}\n" for h in sha256s)
    return md5s, sha256s, words


def make_mix(
    rng: np.random.Generator, words: np.ndarray, md5s: list[str], sha256s: list[str], n: int
) -> list[dict[str, str]]:
    n_digest = n // 10
    pdq = make_queries(rng, words, n - 2 * n_digest)

    def digests(known: list[str], nbytes: int) -> list[str]:
        present = [known[i] for i in rng.integers(0, len(known), n_digest // 2)]
        return present + random_hex(rng, n_digest - len(present), nbytes)

    queries = [{"hash": h, "hash_kind": "pdq"} for h in pdq]
    queries += [{"hash": h, "hash_kind": "md5"} for h in digests(md5s, 16)]
    queries += [{"hash": h, "hash_kind": "sha256"} for h in digests(sha256s, 32)]
    return [queries[i] for i in rng.permutation(len(queries))]


# --- the server (child process) -------------------------------------------------------------


async def serve(data_dir: Path, port: int) -> None:
    from aiohttp import web

    from arachne.dashboard.app import create_app
    from arachne.dashboard.security import reads_only, requires

    @reads_only  # like /api/match: a lookup, not written to the audit log
    @requires("viewer")
    async def empty(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"results": []})

    app = create_app(bench_settings(data_dir))
    # The floor: the same middlewares as /api/match (headers, errors, auth) around no work.
    app.router.add_post(EMPTY_PATH, empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- load -----------------------------------------------------------------------------------


async def drive(
    url: str, token: str, bodies: list[bytes], clients: int, seconds: float
) -> tuple[int, float, list[float]]:
    """(requests, wall seconds, latencies) of ``clients`` loops posting ``bodies`` in turn."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter()
        end = start + seconds

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                async with session.post(url, data=bodies[i % len(bodies)]) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                latencies.append(time.perf_counter() - t0)
                i += clients

        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - start
    return len(latencies), wall, latencies


async def post_once(url: str, token: str, body: bytes) -> tuple[float, dict[str, Any]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    t0 = time.perf_counter()
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(url, data=body) as resp,
    ):
        answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {answer}")
    return time.perf_counter() - t0, answer


def direct(
    fn: Callable[[list[tuple[str, str]]], object], work: list[list[tuple[str, str]]], s: float
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < s:
        t0 = time.perf_counter()
        fn(work[len(latencies) % len(work)])
        latencies.append(time.perf_counter() - t0)
    return len(latencies), time.perf_counter() - start, latencies


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, every thread) of this process, or of ``pid`` (Linux)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(
    pid: int | None, per_request: int, load: Awaitable[tuple[int, float, list[float]]]
) -> dict[str, float]:
    """The load's figures, with the CPU that ``pid`` (the server, else this process) spent
    per request: what the machine pays for one, whatever else shares its cores."""
    before = cpu_s(pid)
    n, wall, latencies = await load
    fig = figures(n, wall, latencies, per_request)
    fig["cpu_ms"] = (cpu_s(pid) - before) / n * 1e3
    return fig


def figures(n: int, wall: float, latencies: list[float], per_request: int) -> dict[str, float]:
    lat = np.asarray(latencies) * 1e3
    return {
        "rps": n / wall,
        "hashes_per_s": n * per_request / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def answers(results: list[dict[str, Any]]) -> list[tuple[str, tuple[int, ...]]]:
    return [(r["result"], tuple(sorted(m["distance"] for m in r["matches"]))) for r in results]


# --- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from arachne.dashboard import match_api
    from arachne.store.db import Store
    from arachne.store.hashlists import import_list
    from arachne.store.models import AuditLog
    from arachne.store.users import create_token

    rng = np.random.default_rng(args.seed)
    fig: dict[str, Any] = {"size": args.size}
    t0 = time.perf_counter()
    md5s, sha256s, words = make_bank(rng, args.size, work / "bank.txt")
    mix = make_mix(rng, words, md5s, sha256s, 20 * BATCH)
    print(f"bank: {args.size:,} PDQ + {2 * len(md5s):,} digests ({time.perf_counter() - t0:.1f} s)")

    settings = bench_settings(work / "data")
    store = Store.open(settings)
    t0 = time.perf_counter()
    import_list(store, "bank", work / "bank.txt")
    fig["import_s"] = time.perf_counter() - t0
    with store.session() as session:
        token = create_token(session, "bench", "viewer", actor="bench")[1]
    print(f"import_list: {fig['import_s']:.1f} s")

    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.api", "--serve", str(work / "data"), "--port"]
    server = subprocess.Popen([*cmd, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the server did not start (its error is above)")
        url = f"http://127.0.0.1:{port}/api/match"
        single_bodies = [json.dumps({"queries": [q]}).encode() for q in mix]
        batch_bodies = [
            json.dumps({"queries": mix[i : i + BATCH]}).encode() for i in range(0, len(mix), BATCH)
        ]
        # The first request, sent at once, makes the server load the bank; this process
        # loads it for the baseline meanwhile (two cores, two loads).
        index = match_api.MatchIndex(settings, store)
        (first_s, first), _ = await asyncio.gather(
            post_once(url, token, batch_bodies[0]), asyncio.to_thread(index.refresh_if_stale)
        )
        fig["first_request_s"] = first_s
        print(f"first request (the server loads the bank): {first_s:.1f} s")

        singles = [[(q["hash_kind"], q["hash"])] for q in mix]
        batches = [singles_to_batch(singles[i : i + BATCH]) for i in range(0, len(mix), BATCH)]
        expected = match_api.match_hashes(index, batches[0])
        fig["same_results"] = answers(first["results"]) == [
            ("match" if ds else "no-match", tuple(sorted(d.distance for d in ds)))
            for ds in expected
        ]
        fig["hits_per_batch"] = sum(1 for ds in expected if ds)

        run_direct = partial(match_api.match_hashes, index)
        rows: dict[str, dict[str, float]] = {}
        quick = max(1.0, args.seconds / 3)
        rows["direct single"] = await measured(
            None, 1, asyncio.to_thread(direct, run_direct, singles, quick)
        )
        rows["direct 1,000"] = await measured(
            None, BATCH, asyncio.to_thread(direct, run_direct, batches, quick)
        )
        del index, run_direct  # before the HTTP loads: this process is their client
        rows["HTTP single"] = await measured(
            server.pid, 1, drive(url, token, single_bodies, args.clients, args.seconds)
        )
        rows["HTTP 1,000"] = await measured(
            server.pid, BATCH, drive(url, token, batch_bodies, args.batch_clients, args.seconds)
        )
        empty_url = f"http://127.0.0.1:{port}{EMPTY_PATH}"
        rows["HTTP empty"] = await measured(
            server.pid, 1, drive(empty_url, token, single_bodies, args.clients, quick)
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    with store.session() as session:
        fig["audit_rows"] = session.scalar(select(func.count(AuditLog.id)))
    store.dispose()
    fig["rows"] = rows
    return fig


def singles_to_batch(singles: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [q for (q,) in singles]


def report(fig: dict[str, Any], args: argparse.Namespace) -> None:
    rows = fig.pop("rows")
    table = [
        ("load", "clients", "requests/s", "hashes/s", "p50 ms", "p99 ms", "CPU ms/req", "vs direct")
    ]
    for name, base, clients in (
        ("HTTP single", "direct single", args.clients),
        ("HTTP 1,000", "direct 1,000", args.batch_clients),
    ):
        for label, r, c in ((base, rows[base], 1), (name, rows[name], clients)):
            ratio = r["rps"] / rows[base]["rps"]
            table.append(
                (label, str(c), f"{r['rps']:,.0f}", f"{r['hashes_per_s']:,.0f}",
                 f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['cpu_ms']:.2f}", f"{ratio:.2f}x")
            )  # fmt: skip
    r = rows["HTTP empty"]
    table.append(
        ("HTTP, empty handler", str(args.clients), f"{r['rps']:,.0f}", "",
         f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['cpu_ms']:.2f}", "")
    )  # fmt: skip
    print_table(table)
    print(
        f"{fig['hits_per_batch']} of {BATCH} queries per batch match; HTTP answers equal the "
        f"in-process ones: {fig['same_results']}; {fig['audit_rows']:,} audit rows written; "
        f"{os.cpu_count()} CPUs shared by server and clients"
    )
    out = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in fig.items()}
    for key, prefix in (
        ("HTTP single", "single"),
        ("HTTP 1,000", "batch"),
        ("direct single", "direct_single"),
        ("direct 1,000", "direct_batch"),
        ("HTTP empty", "empty_handler"),
    ):
        r = rows[key]
        out[f"{prefix}_rps"] = round(r["rps"], 1)
        out[f"{prefix}_p50_ms"] = round(r["p50_ms"], 2)
        out[f"{prefix}_p99_ms"] = round(r["p99_ms"], 2)
        out[f"{prefix}_cpu_ms"] = round(r["cpu_ms"], 3)
    out["batch_hashes_per_s"] = round(rows["HTTP 1,000"]["hashes_per_s"])
    out["single_vs_direct"] = round(rows["HTTP single"]["rps"] / rows["direct single"]["rps"], 3)
    out["batch_vs_direct"] = round(rows["HTTP 1,000"]["rps"] / rows["direct 1,000"]["rps"], 3)
    out |= {"clients": args.clients, "batch_clients": args.batch_clients, "cpus": os.cpu_count()}
    print_result(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="PDQ hashes in the bank")
    ap.add_argument("--seconds", type=float, default=8.0, help="per HTTP load")
    ap.add_argument("--clients", type=int, default=16, help="for single-hash requests")
    ap.add_argument("--batch-clients", type=int, default=4, help="for 1,000-hash requests")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--quick", action="store_true", help="50k hashes, 3 s loads: a smoke run")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child: a data dir
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port))
        return
    if args.quick:
        args.size, args.seconds = 50_000, 3.0
    with tempfile.TemporaryDirectory(prefix="arachne-bench-api-") as tmp:
        fig = asyncio.run(run(args, Path(tmp)))
    report(fig, args)


if __name__ == "__main__":
    main()
