"""Benign, deterministic image corpora for the hashing and fidelity benchmarks.

Everything is built in memory from the shared photos (never written to disk), with fixed
seeds, so two runs on any machine hash the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path("/work/shared/data/photos")
SEED = 20261125

# Web-like mix by count: JPEG dominates the web, PNG and WebP share most of the rest.
FORMATS: tuple[tuple[str, float], ...] = (("JPEG", 0.6), ("PNG", 0.2), ("WEBP", 0.2))
# Log-spaced target sizes between 0.3 and 8 megapixels.
MEGAPIXELS: tuple[float, ...] = (0.3, 0.5, 0.8, 1.2, 2.0, 3.0, 5.0, 8.0)


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    format: str
    size: tuple[int, int]


def photo_paths() -> list[Path]:
    paths = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not paths:
        raise SystemExit(f"no photos under {PHOTOS}")
    return paths


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def resize_to_megapixels(img: Image.Image, megapixels: float) -> Image.Image:
    scale = math.sqrt(megapixels * 1e6 / (img.width * img.height))
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def add_grain(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Sensor-like noise: upscaled small photos are unrealistically smooth at 8 MP."""
    if sigma <= 0:
        return img
    arr = np.asarray(img, dtype=np.float32)
    noise = rng.normal(0.0, sigma, arr.shape[:2]).astype(np.float32)[..., None]
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


def encode_web(img: Image.Image, fmt: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """Encode as a website might: varied JPEG qualities, subsampling and progressive scans."""
    if fmt == "JPEG":
        quality = int(rng.integers(70, 96))
        subsampling = int(rng.choice([0, 2, 2, 2]))  # mostly 4:2:0, some 4:4:4
        progressive = bool(rng.random() < 0.3)
        data = encode(
            img, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive
        )
        return data, f"jpeg-q{quality}{'-prog' if progressive else ''}-ss{subsampling}"
    if fmt == "PNG":
        return encode(img, "PNG", compress_level=3), "png"
    quality = int(rng.integers(70, 91))
    return encode(img, "WEBP", quality=quality, method=2), f"webp-q{quality}"


def web_corpus(*, quick: bool = False, seed: int = SEED) -> list[Sample]:
    """The shared photos as shipped, plus re-encodes at 0.3-8 MP in a web-like format mix.

    ``quick`` keeps one re-encode per photo and caps the size at 3 MP.
    """
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    per_photo = 1 if quick else 5
    sizes = [mp for mp in MEGAPIXELS if not quick or mp <= 3.0]
    fmts, weights = zip(*FORMATS, strict=True)
    for path in photo_paths():
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            samples.append(Sample(path.name, data, img.format or "?", img.size))
        rgb = load_rgb(path)
        for _ in range(per_photo):
            mp = float(rng.choice(sizes))
            fmt = str(rng.choice(fmts, p=weights))
            sigma = float(rng.choice([0.0, 2.0, 4.0]))
            img = add_grain(resize_to_megapixels(rgb, mp), sigma, rng)
            blob, label = encode_web(img, fmt, rng)
            name = f"{path.stem}@{mp:g}MP-g{sigma:g}-{label}"
            samples.append(Sample(name, blob, fmt, img.size))
    return samples
