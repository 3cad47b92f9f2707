"""PDQ hashing speed and fidelity: the reference path against the worker's fast path.

    .venv/bin/python -m benchmarks.hashing [--quick] [--repeats N]

Corpus (benchmarks/corpus.py, fixed seed, in memory): the shared photos as shipped plus
re-encodes at 0.3-8 MP, 60% JPEG / 20% PNG / 20% WebP. Every path runs on every image in one
process on one core (BLAS pinned to one thread), interleaved image by image so that load from
other processes hits all paths alike; each image's time is its best of ``--repeats``.
Fidelity is the Hamming distance of each path's PDQ to the reference path's on the same bytes.

Paths (the levers, one at a time):
  reference     Pillow RGB decode + pdqhash.compute_dihedral (python-threatexchange's)
  ref-nocopy    the same without the needless RGB->RGB convert (identical hashes)
  ref-stackL    decode to L, stack to 3 channels for pdqhash (it needs H x W x 3)
  draft512      Pillow draft() to >= 512 px, RGB, pdqhash (the first fast try)
  L-full        decode to L at full size + PDQ's downsampling as one linear map (numpy)
  fast-w1/w3    + DCT-domain draft (JPEG) / Image.reduce (others) while PDQ's box window
                spans >= 1 / 3 downscaled pixels
  fast          the same at >= 2 downscaled and >= 6 full-resolution pixels
                (decode.MIN_SCALE_WINDOW, MIN_BOX): the worker path, digests, border
                trimming and the up2 hash included, exactly as hash_image_bytes(reference=False)
  fast-pilPNG   the fast path with PNG decoded by Pillow instead of matcher/png.py
  fast-pilWebP  the fast path with WebP decoded by Pillow instead of libwebp's Y plane
  decode-floor  digests + the fast path's decode alone: no hashing change can beat it
The last line printed is one JSON object of the reference-vs-fast figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # per-core figures: before numpy loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pdqhash  # noqa: E402
from PIL import Image  # noqa: E402

from arachne.matcher import decode, webp_luma  # noqa: E402
from arachne.matcher.decode import decode_luma  # noqa: E402
from arachne.matcher.hashing import digests, hash_image_bytes  # noqa: E402
from arachne.matcher.kinds import PDQ  # noqa: E402
from arachne.matcher.pdq import pdq_from_luma  # noqa: E402
from benchmarks.common import print_result, print_table  # noqa: E402
from benchmarks.corpus import Sample, web_corpus  # noqa: E402

MAX_PIXELS = 64_000_000
HashPath = Callable[[bytes], str]  # bytes -> PDQ hex of the original orientation


def _pdqhash(arr: np.ndarray) -> str:
    variants, _quality = pdqhash.compute_dihedral(arr)
    return PDQ.bits_to_hex(variants[0])


def reference(data: bytes) -> str:
    return hash_image_bytes(data, max_pixels=MAX_PIXELS).pdq or ""


def ref_nocopy(data: bytes) -> str:
    digests(data)
    img = Image.open(io.BytesIO(data))
    img.load()
    return _pdqhash(np.asarray(img if img.mode == "RGB" else img.convert("RGB")))


def ref_stack_l(data: bytes) -> str:
    digests(data)
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG" and img.mode == "RGB":
        img.draft("L", None)  # Y straight from the decoder, no chroma work
    img.load()
    grey = np.asarray(img.convert("L"))
    return _pdqhash(np.repeat(grey[:, :, None], 3, axis=2))


def draft512(data: bytes) -> str:
    digests(data)
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (512, 512))
    img.load()
    return _pdqhash(np.asarray(img.convert("RGB")))


def numpy_path(min_window: int) -> HashPath:
    def run(data: bytes) -> str:
        digests(data)
        luma = decode_luma(data, MAX_PIXELS, min_window=min_window, min_box=0)
        return pdq_from_luma(luma)[0][0]

    return run


def decode_floor(data: bytes) -> str:
    """Digests + the fast path's decode, no hashing: the most any hashing change could win."""
    digests(data)
    decode_luma(data, MAX_PIXELS)
    return ""


def fast(data: bytes) -> str:
    return hash_image_bytes(data, max_pixels=MAX_PIXELS, reference=False).pdq or ""


def fast_without(module: object, attr: str, value: object) -> HashPath:
    """The fast path with ``module.attr`` set to ``value`` for the call (a lever off)."""

    def run(data: bytes) -> str:
        saved = getattr(module, attr)
        setattr(module, attr, value)
        try:
            return fast(data)
        finally:
            setattr(module, attr, saved)

    return run


# PNG through Pillow (to L, then reduced) instead of matcher/png.py; WebP through Pillow
# (RGBA, then L) instead of libwebp's Y plane.
fast_pillow_png = fast_without(decode, "_png_failed", True)
fast_pillow_webp = fast_without(webp_luma, "lib", None)


PATHS: dict[str, HashPath] = {
    "reference": reference,
    "ref-nocopy": ref_nocopy,
    "ref-stackL": ref_stack_l,
    "draft512": draft512,
    "L-full": numpy_path(10**9),
    "fast-w1": numpy_path(1),
    "fast-w3": numpy_path(3),
    "fast": fast,
    "fast-pilPNG": fast_pillow_png,
    "fast-pilWebP": fast_pillow_webp,
    "decode-floor": decode_floor,
}


def measure(
    corpus: list[Sample], paths: dict[str, HashPath], repeats: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per-path arrays of per-image best seconds, and the hashes."""
    secs = {name: np.full(len(corpus), np.inf) for name in paths}
    hashes: dict[str, list[str]] = {name: [""] * len(corpus) for name in paths}
    for i, sample in enumerate(corpus):
        for _ in range(repeats):
            for name, run in paths.items():
                start = time.perf_counter()
                hexes = run(sample.data)
                secs[name][i] = min(secs[name][i], time.perf_counter() - start)
                hashes[name][i] = hexes
    return secs, hashes


def bits_stats(dist: np.ndarray) -> dict[str, float]:
    return {
        "max": int(dist.max()),
        "p99": float(np.percentile(dist, 99)),
        "mean": float(dist.mean()),
        "within10": float((dist <= 10).mean() * 100),
    }


def digest_lever(corpus: list[Sample], repeats: int) -> list[tuple[str, ...]]:
    def chunked(data: bytes, chunk: int = 1 << 18) -> tuple[str, str, str]:
        hs = (hashlib.sha256(), hashlib.md5(usedforsecurity=False), hashlib.sha1())
        view = memoryview(data)
        for start in range(0, len(view), chunk):
            for h in hs:
                h.update(view[start : start + chunk])
        return hs[0].hexdigest(), hs[1].hexdigest(), hs[2].hexdigest()

    total = sum(len(s.data) for s in corpus)
    rows = [("digests (sha256+md5+sha1)", "MB/s", "ms/img")]
    for name, fn in (("whole buffer, 3 calls", digests), ("one pass, 256 KiB chunks", chunked)):
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for s in corpus:
                fn(s.data)
            best = min(best, time.perf_counter() - start)
        rows.append((name, f"{total / best / 1e6:.0f}", f"{best / len(corpus) * 1e3:.2f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpus (<= 3 MP)")
    parser.add_argument("--repeats", type=int, default=None, help="best of N per image")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 2)

    start = time.perf_counter()
    corpus = web_corpus(quick=args.quick)
    mb = sum(len(s.data) for s in corpus) / 1e6
    mp = np.array([s.size[0] * s.size[1] / 1e6 for s in corpus])
    print(
        f"corpus: {len(corpus)} images, {mb:.0f} MB, {mp.min():.2f}-{mp.max():.2f} MP "
        f"(median {np.median(mp):.2f}), built in {time.perf_counter() - start:.0f} s; "
        f"best of {repeats}, one core"
    )
    decode.warm_up()  # compile (or load) the PNG kernel before any timing
    secs, hashes = measure(corpus, PATHS, repeats)
    ref_total = secs["reference"].sum()
    ref_hashes = hashes["reference"]

    def dist(name: str) -> np.ndarray:
        return np.array([PDQ.distance(a, b) for a, b in zip(hashes[name], ref_hashes, strict=True)])

    rows = [("path", "img/s", "speedup", "ms/img", "bits max", "p99", "mean", "<=10 bits")]
    for name in PATHS:
        if name == "decode-floor":
            total = secs[name].sum()
            rows.append(
                (
                    name,
                    f"{len(corpus) / total:.1f}",
                    f"{ref_total / total:.2f}x",
                    f"{total / len(corpus) * 1e3:.1f}",
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
            continue
        st = bits_stats(dist(name))
        total = secs[name].sum()
        rows.append(
            (
                name,
                f"{len(corpus) / total:.1f}",
                f"{ref_total / total:.2f}x",
                f"{total / len(corpus) * 1e3:.1f}",
                str(st["max"]),
                f"{st['p99']:.1f}",
                f"{st['mean']:.2f}",
                f"{st['within10']:.1f}%",
            )
        )
    print_table(rows)

    print()
    fmt_rows = [
        ("format", "images", "reference img/s", "fast img/s", "speedup", "floor", "bits max")
    ]
    fast_dist = dist("fast")
    for fmt in sorted({s.format for s in corpus}):
        idx = np.array([s.format == fmt for s in corpus])
        r, f = secs["reference"][idx].sum(), secs["fast"][idx].sum()
        floor = secs["decode-floor"][idx].sum()
        fmt_rows.append(
            (
                fmt,
                str(int(idx.sum())),
                f"{idx.sum() / r:.1f}",
                f"{idx.sum() / f:.1f}",
                f"{r / f:.2f}x",
                f"{r / floor:.2f}x",
                str(int(fast_dist[idx].max())),
            )
        )
    print_table(fmt_rows)

    print()
    print_table(digest_lever(corpus, repeats))

    trimmed = sum(
        bool(hash_image_bytes(s.data, reference=False).pdq_trimmed_variants) for s in corpus
    )
    print(
        f"\nfast path trimmed a border on {trimmed} of {len(corpus)} images (8 more queries each)"
    )
    worst = np.argsort(-fast_dist)[:5]
    print()
    print(
        "largest fast-path distances:", ", ".join(f"{corpus[i].name}={fast_dist[i]}" for i in worst)
    )

    st = bits_stats(fast_dist)
    fast_total = secs["fast"].sum()
    print_result(
        {
            "images": len(corpus),
            "quick": args.quick,
            "reference_imgs_per_s": round(len(corpus) / ref_total, 2),
            "fast_imgs_per_s": round(len(corpus) / fast_total, 2),
            "speedup": round(ref_total / fast_total, 2),
            "pdq_bits_max": st["max"],
            "pdq_bits_p99": round(st["p99"], 2),
            "pdq_bits_mean": round(st["mean"], 3),
            "within10_pct": round(st["within10"], 2),
        }
    )


if __name__ == "__main__":
    main()
