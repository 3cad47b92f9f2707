"""Detection fidelity: which edited copies of a known photo still match it at PDQ d <= 31.

    .venv/bin/python -m benchmarks.fidelity [--quick]

Known set: the shared photos, hashed by the reference path (as a list maker would). Every
photo is edited by each transform below (fixed seeds, in memory; edited copies are saved as
JPEG q90 unless the transform says otherwise) and hashed two ways:

  reference  plain PDQ of the copy (reference path, original orientation only)
  worker     hash_image_bytes(reference=False): fast PDQ, all 8 dihedral variants, plus the
             8 variants of the border-trimmed copy when it has borders (ImageHashes.pdq_queries)

As in the Matcher, a copy whose PDQ quality is below 50 is not matched. A copy is found when
one of its query hashes is within 31 bits of its own photo's listed hash. False positives:
every (copy, other photo) pair, all transforms and all query hashes included. The threshold
is never changed here. The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # a worker has one core: before numpy

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps  # noqa: E402

from arachne.matcher.hashing import ImageHashes, hash_image_bytes  # noqa: E402
from benchmarks.common import print_result, print_table  # noqa: E402
from benchmarks.corpus import SEED, encode, load_rgb, photo_paths  # noqa: E402

THRESHOLD = 31
MIN_QUALITY = 50

Transform = Callable[[Image.Image, np.random.Generator], bytes]


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    return encode(img, "JPEG", quality=quality)


def shrink(img: Image.Image, factor: int) -> Image.Image:
    size = (max(1, img.width // factor), max(1, img.height // factor))
    return img.resize(size, Image.Resampling.LANCZOS)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def watermark(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    size = max(10, img.height // 20)
    text = "(c) example-photo.net"
    font = _font(size)
    box = draw.textbbox((0, 0), text, font=font, stroke_width=2)
    corner = int(rng.integers(4))  # which corner
    margin = size // 2
    x = margin if corner in (0, 2) else img.width - (box[2] - box[0]) - margin
    y = margin if corner in (0, 1) else img.height - (box[3] - box[1]) - margin
    draw.text((x, y), text, font=font, fill="white", stroke_width=2, stroke_fill="black")
    return out


def caption_bar(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A meme-style bar over the bottom 10% of the picture, with text."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    bar = max(1, img.height // 10)
    draw.rectangle((0, img.height - bar, img.width, img.height), fill=(20, 20, 20))
    font = _font(int(bar * 0.6))
    draw.text((bar // 3, img.height - bar + bar // 5), "when the weekend finally", font=font)
    return out


def pad(img: Image.Image, fraction: float, colour: str) -> Image.Image:
    border = (round(img.width * fraction), round(img.height * fraction))
    return ImageOps.expand(img, border=border * 2, fill=colour)


def crop(img: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    """Remove ``fraction`` of each dimension, split at random between the two sides."""
    cut_x, cut_y = round(img.width * fraction), round(img.height * fraction)
    left, top = int(rng.integers(cut_x + 1)), int(rng.integers(cut_y + 1))
    return img.crop((left, top, img.width - (cut_x - left), img.height - (cut_y - top)))


def screenshot(img: Image.Image, rng: np.random.Generator) -> bytes:
    """The picture shown in a UI-like page (title bar, sidebar, text), captured, JPEG q80."""
    width, height = int(img.width * 1.45), int(img.height * 1.4)
    canvas = Image.new("RGB", (width, height), (246, 246, 248))
    draw = ImageDraw.Draw(canvas)
    bar, side = int(height * 0.1), int(width * 0.22)
    draw.rectangle((0, 0, width, bar), fill=(40, 44, 52))
    font = _font(bar // 3)
    draw.text((bar // 3, bar // 3), "Gallery - photo 12 of 48", font=font, fill=(230, 230, 230))
    draw.rectangle((0, bar, side, height), fill=(225, 228, 232))
    for i in range(int(rng.integers(6, 12))):
        y = bar + 20 + i * (bar // 2 + 8)
        draw.text((12, y), f"album {i + 1}", font=_font(bar // 4), fill=(60, 60, 70))
    x0 = side + (width - side - img.width) // 2
    canvas.paste(img, (x0, bar + (height - bar - img.height) // 2))
    return jpeg(canvas, 80)


TRANSFORMS: dict[str, Transform] = {
    "original file": lambda img, rng: b"",  # placeholder: the listed bytes themselves
    "jpeg q90": lambda img, rng: jpeg(img, 90),
    "jpeg q50": lambda img, rng: jpeg(img, 50),
    "jpeg q30": lambda img, rng: jpeg(img, 30),
    "resize 1/2": lambda img, rng: jpeg(shrink(img, 2)),
    "resize 1/4": lambda img, rng: jpeg(shrink(img, 4)),
    "png": lambda img, rng: encode(img, "PNG"),
    "webp q80": lambda img, rng: encode(img, "WEBP", quality=80),
    "greyscale": lambda img, rng: jpeg(img.convert("L")),
    "brightness x0.7": lambda img, rng: jpeg(ImageEnhance.Brightness(img).enhance(0.7)),
    "brightness x1.4": lambda img, rng: jpeg(ImageEnhance.Brightness(img).enhance(1.4)),
    "gamma 2": lambda img, rng: jpeg(img.point(lambda v: round(255 * (v / 255) ** 0.5))),
    "blur sigma 1": lambda img, rng: jpeg(img.filter(ImageFilter.GaussianBlur(1))),
    "text watermark": lambda img, rng: jpeg(watermark(img, rng)),
    "caption bar 10%": lambda img, rng: jpeg(caption_bar(img, rng)),
    "white border 5%": lambda img, rng: jpeg(pad(img, 0.05, "white")),
    "white border 10%": lambda img, rng: jpeg(pad(img, 0.10, "white")),
    "black border 5%": lambda img, rng: jpeg(pad(img, 0.05, "black")),
    "black border 10%": lambda img, rng: jpeg(pad(img, 0.10, "black")),
    "crop 2%": lambda img, rng: jpeg(crop(img, 0.02, rng)),
    "crop 5%": lambda img, rng: jpeg(crop(img, 0.05, rng)),
    "crop 10%": lambda img, rng: jpeg(crop(img, 0.10, rng)),
    "rotate 2deg": lambda img, rng: jpeg(img.rotate(2, Image.Resampling.BICUBIC)),
    "rotate 5deg": lambda img, rng: jpeg(img.rotate(5, Image.Resampling.BICUBIC)),
    "flip horizontal": lambda img, rng: jpeg(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "rotate 90": lambda img, rng: jpeg(img.transpose(Image.Transpose.ROTATE_90)),
    "screenshot": screenshot,
}

# Targets: transform -> minimum worker recall. Every transform also must not lose against
# the reference path, and false positives must be zero.
TARGETS: dict[str, float] = {
    **{t: 0.99 for t in ("jpeg q90", "jpeg q50", "jpeg q30", "resize 1/2", "png", "webp q80")},
    **{t: 0.99 for t in ("greyscale", "brightness x0.7")},
    **{t: 0.95 for t in ("flip horizontal", "rotate 90")},
    **{f"{c} border {p}%": 0.95 for c in ("white", "black") for p in (5, 10)},
}


@dataclass
class Copy:
    photo: int
    transform: str
    reference: ImageHashes
    worker: ImageHashes


def _matrix(hexes: list[str]) -> np.ndarray:
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), np.uint8).reshape(-1, 32)


def distances(queries: list[str], listed: np.ndarray) -> np.ndarray:
    """Min Hamming distance from any of ``queries`` to each listed hash (inf if none)."""
    if not queries:
        return np.full(len(listed), np.inf)
    q = _matrix(queries)
    d = np.unpackbits(q[:, None, :] ^ listed[None, :, :], axis=2).sum(axis=2)
    return d.min(axis=0).astype(float)


def queries(copy: Copy, path: str) -> list[str]:
    if path == "reference":
        h = copy.reference
        return [h.pdq] if h.pdq and (h.pdq_quality or 0) >= MIN_QUALITY else []
    return [v for _label, v in copy.worker.pdq_queries(MIN_QUALITY)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every third photo only")
    args = parser.parse_args()
    paths = photo_paths()[:: 3 if args.quick else 1]
    start = time.perf_counter()

    listed_hashes = [hash_image_bytes(p.read_bytes()) for p in paths]
    for p, h in zip(paths, listed_hashes, strict=True):
        assert h.pdq is not None, p
    listed = _matrix([h.pdq or "" for h in listed_hashes])

    copies: list[Copy] = []
    trims = 0
    for i, path in enumerate(paths):
        img = load_rgb(path)
        for n, (name, transform) in enumerate(TRANSFORMS.items()):
            rng = np.random.default_rng([SEED, i, n])
            data = path.read_bytes() if name == "original file" else transform(img, rng)
            worker = hash_image_bytes(data, reference=False)
            trims += bool(worker.pdq_trimmed_variants)
            copies.append(Copy(i, name, hash_image_bytes(data), worker))

    names = list(TRANSFORMS)
    recall: dict[str, dict[str, float]] = {"reference": {}, "worker": {}}
    fp = {"reference": 0, "worker": 0}
    min_negative = {"reference": float("inf"), "worker": float("inf")}
    fp_examples: list[str] = []
    misses: dict[str, list[str]] = {t: [] for t in names}
    found_by: dict[str, dict[str, set[int]]] = {}
    for which in ("reference", "worker"):
        found: dict[str, set[int]] = {t: set() for t in names}
        for c in copies:
            d = distances(queries(c, which), listed)
            if d[c.photo] <= THRESHOLD:
                found[c.transform].add(c.photo)
            if which == "worker" and d[c.photo] > THRESHOLD:
                misses[c.transform].append(f"{paths[c.photo].stem} ({d[c.photo]:.0f})")
            others = np.delete(d, c.photo)
            min_negative[which] = min(min_negative[which], float(others.min()))
            bad = int((others <= THRESHOLD).sum())
            fp[which] += bad
            if bad and len(fp_examples) < 5:
                fp_examples.append(f"{which}: {paths[c.photo].name} / {c.transform}")
        recall[which] = {t: len(found[t]) / len(paths) for t in names}
        found_by[which] = found

    rows = [("transform", "reference", "worker", "target", "met")]
    failures = []
    for t in names:
        ref, work = recall["reference"][t], recall["worker"][t]
        target = TARGETS.get(t)
        lost = found_by["reference"][t] - found_by["worker"][t]  # copy by copy, not rates
        met = not lost and (target is None or work >= target)
        if not met:
            failures.append(t)
        rows.append(
            (
                t,
                f"{ref:.0%}",
                f"{work:.0%}",
                f">={target:.0%}" if target else "no loss",
                "yes" if met else "NO",
            )
        )
    print(
        f"{len(paths)} photos x {len(names)} transforms = {len(copies)} copies, "
        f"match at d <= {THRESHOLD}, quality >= {MIN_QUALITY}; "
        f"{trims} worker copies had borders trimmed; {time.perf_counter() - start:.0f} s"
    )
    print_table(rows)
    negatives = len(copies) * (len(paths) - 1)
    for which in ("reference", "worker"):
        print(
            f"{which}: {fp[which]} false positives over {negatives} (copy, other photo) pairs; "
            f"closest other photo at {min_negative[which]:.0f} bits"
        )
    for line in fp_examples:
        print("  false positive:", line)
    print("targets not met:", ", ".join(failures) if failures else "none")
    for t in names:
        if t in TARGETS and misses[t]:
            print(f"  worker misses on {t}: {', '.join(misses[t])}")
    print_result(
        {
            "photos": len(paths),
            "quick": args.quick,
            "threshold": THRESHOLD,
            "recall_reference": {t: round(v, 4) for t, v in recall["reference"].items()},
            "recall_worker": {t: round(v, 4) for t, v in recall["worker"].items()},
            "false_positives_reference": fp["reference"],
            "false_positives_worker": fp["worker"],
            "min_negative_distance_reference": min_negative["reference"],
            "min_negative_distance_worker": min_negative["worker"],
            "targets_not_met": failures,
        }
    )


if __name__ == "__main__":
    main()
