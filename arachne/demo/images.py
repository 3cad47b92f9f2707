"""Pictures for the demo site, all in memory: the shared photos (downscaled), variants of the
known ones, generated benign pictures, hand-made bad inputs, and the ground-truth checks.

PDQ here always follows the reference path (Pillow decode of the served bytes → RGB array →
``pdqhash``), so what the site promises is what a faithful matcher will find.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import struct
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageOps

MATCH_DISTANCE = 31
"""PDQ distance at or below which two pictures match (the project's default threshold)."""

MIN_QUALITY = 50
"""PDQ quality below which a hash is never matched."""

KNOWN_VARIANT_MARGIN = 20
"""A photo becomes "known" only if all its variants stay this close: leaves ~10 bits for
faster decode paths (DESIGN allows them up to 10 bits off the reference)."""

MAX_SIDE = 1024
"""Longest side of every served photo (keeps hashing in tests fast)."""

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
GENERATED_KINDS = ("shapes", "gradient", "noise", "stripes")
_PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}

NOT_AN_IMAGE = (
    b"<!doctype html>\n<html><head><title>Moved</title></head>"
    b"<body><p>This picture has moved to our new gallery.</p></body></html>\n"
)


@dataclass(frozen=True)
class Blob:
    """Bytes the site serves at an image URL, with the Content-Type it claims."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class Photo:
    name: str
    image: Image.Image  # decoded, longest side <= MAX_SIDE
    exact: Blob  # the served bytes: the original file when already small enough


@dataclass(frozen=True)
class KnownPhoto:
    name: str
    exact: Blob
    pdq: str
    quality: int
    md5: str
    sha1: str
    sha256: str
    variants: dict[str, Blob] = field(default_factory=dict)  # variant name -> near copy
    distances: dict[str, int] = field(default_factory=dict)  # variant name -> PDQ distance


@dataclass(frozen=True)
class Catalogue:
    known: list[KnownPhoto]
    unrelated: list[tuple[str, Blob]]  # (label, bytes): the other photos and their variants


def encode(img: Image.Image, ext: str, **options: int) -> Blob:
    if ext == "jpg" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    if ext == "gif" and img.mode == "RGB":  # Pillow's default median cut is ~10x slower
        img = img.quantize(128, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    img.save(out, _PIL_FORMATS[ext], **options)
    return Blob(out.getvalue(), CONTENT_TYPES[ext])


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def pdq_of(data: bytes) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.asarray(decode(data).convert("RGB")))
    return bits_to_hex(bits), int(quality)


def pdq_dihedral(data: bytes) -> tuple[list[str], int]:
    hashes, quality = pdqhash.compute_dihedral(np.asarray(decode(data).convert("RGB")))
    return [bits_to_hex(h) for h in hashes], int(quality)


def nearest(data: bytes, known: Iterable[str]) -> tuple[int, int]:
    """(min distance over the 8 dihedral hashes of ``data`` to any of ``known``, quality)."""
    variants, quality = pdq_dihedral(data)
    best = min((hamming(v, k) for v in variants for k in known), default=256)
    return best, quality


# --- photos -------------------------------------------------------------------------------


def load_photo(path: Path) -> Photo:
    data = path.read_bytes()
    img = Image.open(io.BytesIO(data))
    if max(img.size) <= MAX_SIDE:
        img.load()
        ext = "jpg" if img.format == "JPEG" else "png"
        return Photo(path.stem, img, Blob(data, CONTENT_TYPES[ext]))
    ext = "jpg" if img.format == "JPEG" else "png"
    scale = MAX_SIDE / max(img.size)
    if img.format == "JPEG":  # let the decoder do the coarse shrinking (DCT scaling): fast
        img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    exact = encode(img, ext, quality=90) if ext == "jpg" else encode(img, ext, compress_level=3)
    return Photo(path.stem, img, exact)


def load_photos(photos_dir: Path, pool: ThreadPoolExecutor) -> list[Photo]:
    paths = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in _PHOTO_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no .jpg/.png photos in {photos_dir}")
    return list(pool.map(load_photo, paths))  # Pillow decodes without the GIL


VARIANT_NAMES = ("jpeg70", "half", "flip", "grey")
"""The near copies served for each known photo (see ``known_variants``)."""


def known_variants(photo: Photo) -> dict[str, Blob]:
    """Near copies: different bytes, same picture to PDQ (md5 never equals the exact copy)."""
    rgb = photo.image.convert("RGB")
    half = rgb.resize((max(1, rgb.width // 2), max(1, rgb.height // 2)), Image.Resampling.LANCZOS)
    return {
        "jpeg70": encode(rgb, "jpg", quality=70),
        "half": encode(half, "webp", quality=80),
        "flip": encode(ImageOps.mirror(rgb), "png", compress_level=3),
        "grey": encode(ImageOps.grayscale(rgb), "gif"),
    }


def unrelated_variants(photo: Photo) -> dict[str, Blob]:
    rgb = photo.image.convert("RGB")
    half = rgb.resize((max(1, rgb.width // 2), max(1, rgb.height // 2)), Image.Resampling.LANCZOS)
    return {"copy": photo.exact, "half": encode(half, "webp", quality=80)}


def _try_known(photo: Photo) -> KnownPhoto | None:
    pdq, quality = pdq_of(photo.exact.data)
    if quality < MIN_QUALITY:
        return None
    data = photo.exact.data
    variants = known_variants(photo)
    distances: dict[str, int] = {}
    for name, blob in variants.items():
        if blob.data == data:  # a near copy must differ in bytes (md5), or it is exact
            raise RuntimeError(f"{photo.name}/{name}: near copy has the exact copy's bytes")
        distance, vq = nearest(blob.data, [pdq])
        if distance > KNOWN_VARIANT_MARGIN or vq < MIN_QUALITY:
            return None  # this photo is not robust enough to be a known one
        distances[name] = distance
    return KnownPhoto(
        name=photo.name,
        exact=photo.exact,
        pdq=pdq,
        quality=quality,
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        variants=variants,
        distances=distances,
    )


def build_catalogue(photos_dir: Path, known_count: int, seed: int) -> Catalogue:
    """Pick ``known_count`` photos (seeded) whose variants all stay near; the rest are unrelated.

    Raises ``RuntimeError`` if the ground truth does not hold: that is a generator bug, and a
    demo or test built on it would be silently wrong.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        photos = load_photos(photos_dir, pool)
        order = list(photos)
        random.Random(seed).shuffle(order)
        known: list[KnownPhoto] = []
        rest: list[Photo] = []
        for photo in order:
            candidate = _try_known(photo) if len(known) < known_count else None
            if candidate is None:
                rest.append(photo)
            else:
                known.append(candidate)
        if len(known) < known_count:
            raise RuntimeError(
                f"only {len(known)} of {len(photos)} photos qualify as known, {known_count} asked"
            )
        rest.sort(key=lambda p: p.name)
        unrelated = [
            (f"{photo.name}/{name}", blob)
            for photo, variants in zip(rest, pool.map(unrelated_variants, rest), strict=True)
            for name, blob in variants.items()
        ]
    verify_unrelated(unrelated, known)
    return Catalogue(known, unrelated)


def verify_unrelated(items: Sequence[tuple[str, Blob]], known: Sequence[KnownPhoto]) -> None:
    """Every unrelated picture is > MATCH_DISTANCE from every known PDQ, or low quality."""
    hashes = [k.pdq for k in known]
    md5s = {k.md5 for k in known}
    for label, blob in items:
        if hashlib.md5(blob.data, usedforsecurity=False).hexdigest() in md5s:
            raise RuntimeError(f"unrelated picture {label} has a known md5")
        distance, quality = nearest(blob.data, hashes)
        if distance <= MATCH_DISTANCE and quality >= MIN_QUALITY:
            raise RuntimeError(f"unrelated picture {label} is {distance} from a known PDQ")


# --- generated pictures ------------------------------------------------------------------


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def render(kind: str, seed: int, width: int, height: int) -> Image.Image:
    """A benign picture, fully determined by (kind, seed, size)."""
    rng = np.random.default_rng([seed, GENERATED_KINDS.index(kind)])
    if kind == "shapes":
        img = Image.new("RGB", (width, height), _colour(rng))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 12))):
            x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
            box = (x0, y0, x1 + 8, y1 + 8)
            shape = int(rng.integers(0, 3))
            if shape == 0:
                draw.rectangle(box, fill=_colour(rng))
            elif shape == 1:
                draw.ellipse(box, fill=_colour(rng))
            else:
                draw.polygon([(x0, y1 + 8), ((x0 + x1) // 2, y0), (x1 + 8, y1 + 8)], _colour(rng))
        return img
    if kind == "noise":  # coarse noise, smoothly enlarged: cheap to render and to encode
        cells = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), np.uint8)
        return Image.fromarray(cells, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    # Gradients and stripes are smooth: drawn at half size and enlarged, for speed.
    w, h = max(2, width // 2), max(2, height // 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = float(rng.uniform(0, math.pi))
    if kind == "gradient":
        t = xs * math.cos(angle) / w + ys * math.sin(angle) / h
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == "stripes":
        freq, phase = float(rng.uniform(4, 30)), float(rng.uniform(0, 2 * math.pi))
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / max(w, h)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * u + phase)
    else:
        raise ValueError(f"unknown picture kind {kind!r}")
    a, b = (rng.integers(0, 256, 3).astype(np.float32) for _ in range(2))
    pixels = a + (b - a) * t[..., None]
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    return img.resize((width, height), Image.Resampling.BILINEAR)


def render_blob(kind: str, seed: int, width: int, height: int, ext: str) -> Blob:
    img = render(kind, seed, width, height)
    # Fast encoder settings: these are rendered while a crawler waits.
    options = {
        "jpg": {"quality": 85},
        "webp": {"quality": 80, "method": 0},
        "png": {"compress_level": 1},
    }
    return encode(img, ext, **options.get(ext, {}))


# --- bad inputs ---------------------------------------------------------------------------


def truncated_jpeg(seed: int) -> Blob:
    """A real JPEG cut at 60% of its bytes: the header parses, the pixels run out."""
    data = render_blob("shapes", seed, 640, 480, "jpg").data
    return Blob(data[: len(data) * 6 // 10], CONTENT_TYPES["jpg"])


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload)
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def bomb_png(width: int = 50_000, height: int = 50_000) -> Blob:
    """A valid-looking PNG whose header claims ``width``×``height`` pixels; a few hundred
    bytes on the wire. The pixels are never allocated here; a careless decoder would."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # first four rows; the rest is missing
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )
    return Blob(data, CONTENT_TYPES["png"])
