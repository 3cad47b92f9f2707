"""Bytes in memory → exact digests + PDQ (all 8 dihedral variants). Never touches disk.

Two PDQ paths:

- reference (``reference=True``, the default): Pillow decodes to full-resolution RGB and
  ``pdqhash`` (Meta's C++) hashes it. This reproduces python-threatexchange's hashes
  exactly; use it wherever a hash must equal a published one.
- fast (``reference=False``, the worker's): the image is decoded to luminance only, JPEG
  downscaled in the DCT domain (``decode.decode_luma``), and PDQ's own downsampling (two box
  passes, then 64×64 decimation) is applied as one precomputed linear map whose weights are
  folded onto the downscaled pixels, so the 64×64 buffer barely changes. The DCT, median and
  quality steps are PDQ's, in numpy. Its 8 variants are the hashes of the actually rotated
  and flipped image (``dihedral_buffers``), and it also hashes the content inside
  near-uniform borders (``trim.find_trim_box``), when there are any.

Decoding is guarded: the pixel count is checked from the header before any pixel is
decoded (decompression bombs), truncated or corrupt files become an error value, and
nothing here raises for bad input, so one bad image never fails a batch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pdqhash

from arachne.matcher.decode import HashError, Luma, decode_luma, decode_rgb
from arachne.matcher.kinds import PDQ
from arachne.matcher.trim import find_trim_box

__all__ = ["HashError", "ImageHashes", "decode_rgb", "digests", "hash_image_bytes"]

TRIM_PREFIX = "trim+"
"""Variant labels of the trimmed image's hashes: ``trim+rot90`` (fits the 16-char column)."""


@dataclass(frozen=True)
class ImageHashes:
    sha256: str
    md5: str
    sha1: str
    size: int
    width: int | None = None
    height: int | None = None
    format: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    pdq_variants: tuple[str, ...] = field(default=())  # PDQ.VARIANTS order
    error: str | None = None  # decode failure reason; digests are still valid
    error_detail: str | None = None
    # Fast path only: the same 8 variants of the content inside near-uniform borders.
    pdq_trimmed_variants: tuple[str, ...] = field(default=())
    pdq_trimmed_quality: int | None = None
    trim_box: tuple[int, int, int, int] | None = None  # left, top, right, bottom (pixels)

    def pdq_queries(self, min_quality: int = 0) -> list[tuple[str, str]]:
        """(variant label, hash) pairs worth querying: the 8 dihedral variants, then the
        trimmed image's 8 as ``trim+<variant>``; a set below ``min_quality`` is left out."""
        queries: list[tuple[str, str]] = []
        if self.pdq_variants and (self.pdq_quality or 0) >= min_quality:
            queries += zip(PDQ.VARIANTS, self.pdq_variants, strict=True)
        if self.pdq_trimmed_variants and (self.pdq_trimmed_quality or 0) >= min_quality:
            queries += [
                (TRIM_PREFIX + v, h)
                for v, h in zip(PDQ.VARIANTS, self.pdq_trimmed_variants, strict=True)
            ]
        return queries

    def as_json(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "md5": self.md5,
            "sha1": self.sha1,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "pdq": self.pdq,
            "quality": self.pdq_quality,
            "error": self.error,
        }


DIGEST_CHUNK = 256 * 1024


def digests(data: bytes) -> tuple[str, str, str]:
    """(sha256, md5, sha1) of the bytes in one pass: each 256 KiB chunk feeds all three
    while it is in cache (measured as fast as three whole-buffer calls, and the same loop
    can digest a body as it streams in)."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    sha1 = hashlib.sha1(usedforsecurity=False)
    view = memoryview(data)
    for start in range(0, len(view), DIGEST_CHUNK):
        chunk = view[start : start + DIGEST_CHUNK]
        sha256.update(chunk)
        md5.update(chunk)
        sha1.update(chunk)
    return sha256.hexdigest(), md5.hexdigest(), sha1.hexdigest()


# --- PDQ in numpy, on luminance ------------------------------------------------------------

# PDQ's DCT rows 1..16 of a 64-point DCT-II, float32 as in the C++ reference.
_ANGLES = math.pi / 128.0 * np.outer(np.arange(1, 17), np.arange(1, 128, 2))
_DCT = (math.sqrt(2.0 / 64.0) * np.cos(_ANGLES)).astype(np.float32).astype(np.float64)


@lru_cache(maxsize=64)
def axis_weights(length: int, scale: int = 1) -> np.ndarray:
    """PDQ's downsampling along one side of ``length`` pixels as a (64, ceil(length/scale))
    float32 matrix.

    The C++ reference box-filters twice with a window of ceil(length/128) (shrinking at the
    edges) and keeps the pixel at each of 64 centres: a linear map. Row i is that centre's
    weights; with ``scale`` > 1 each column sums the weights of the ``scale`` full-resolution
    pixels that one downscaled pixel averages, so PDQ's blur is kept, not redone on top.
    """
    window = (length + 127) // 128
    half = (window + 2) // 2
    pos = np.arange(length)
    lo = np.maximum(0, pos - (window - half))
    hi = np.minimum(length - 1, pos + half - 1)
    inv = 1.0 / (hi - lo + 1)
    centres = ((np.arange(64) + 0.5) * length / 64).astype(np.int64)
    # Second pass at each centre = mean of first-pass outputs o in [lo, hi]; each of those
    # is a mean over its own window: scatter them as +u at lo[o], -u at hi[o]+1, cumsum.
    counts = hi[centres] - lo[centres] + 1
    rows = np.repeat(np.arange(64), counts)
    firsts = np.repeat(lo[centres] - (np.cumsum(counts) - counts), counts)
    o = firsts + np.arange(int(counts.sum()))
    u = inv[centres][rows] * inv[o]
    acc = np.zeros((64, length + 1))
    np.add.at(acc, (rows, lo[o]), u)
    np.add.at(acc, (rows, hi[o] + 1), -u)
    weights = np.cumsum(acc, axis=1)[:, :length]
    weights[np.abs(weights) < 1e-9] = 0.0  # the cumsum leaves ~1e-17 outside each window
    if scale > 1:
        n = -(-length // scale)
        weights = np.pad(weights, ((0, 0), (0, n * scale - length)))
        weights = weights.reshape(64, n, scale).sum(axis=2)
    out = weights.astype(np.float32)
    out.setflags(write=False)  # cached and shared between calls
    return out


def pdq_quality(buf: np.ndarray) -> int:
    """PDQ's quality metric of a 64×64 buffer, as the C++: int(((u - v) * 100) / 255)
    truncated, summed over neighbours, / 90, capped at 100."""
    down = np.trunc((buf[:-1] - buf[1:]) * np.float32(100) / np.float32(255))
    across = np.trunc((buf[:, :-1] - buf[:, 1:]) * np.float32(100) / np.float32(255))
    total = int(np.abs(down).sum() + np.abs(across).sum())
    return min(total // 90, 100)


def hashes_from_buffers(buffers: np.ndarray) -> tuple[str, ...]:
    """PDQ hex of each 64×64 buffer in a (k, 64, 64) stack: 16×16 DCT, bit = above median."""
    coeffs = (_DCT @ buffers.astype(np.float64) @ _DCT.T).reshape(len(buffers), 256)
    # Torben's median of 256 values is the 128th smallest; bits are "> median", and the
    # hex starts from bit 255 (row 15, column 15).
    median = np.partition(coeffs, 127, axis=1)[:, 127:128]
    packed = np.packbits((coeffs > median)[:, ::-1], axis=1)
    return tuple(row.tobytes().hex() for row in packed)


def dihedral_buffers(pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """PDQ's 64×64 buffers of the image and of its 7 rotations and flips (PDQ.VARIANTS order).

    Each is what PDQ computes for the actually transformed image: a flip reverses a side's
    weights, a transpose swaps the sides. pdqhash instead derives the variants from the
    original's DCT by sign flips, which assumes a symmetric sampling grid; PDQ's is not
    (centres at floor((i + 0.5) * n / 64), boxes longer on one side), and on fine periodic
    texture that shortcut was over 100 bits off the hash of the rotated file.
    """
    both_cols = np.concatenate([cols, cols[:, ::-1]])  # (128, n_cols)
    both_rows = np.concatenate([rows, rows[:, ::-1]])
    full = both_rows @ (pixels @ both_cols.T)  # [[orig, flip lr], [flip ud, rot180]]
    orig, lr, ud, r180 = full[:64, :64], full[:64, 64:], full[64:, :64], full[64:, 64:]
    return np.stack([orig, lr.T, r180, ud.T, ud, lr, orig.T, r180.T])


def pdq_from_luma(
    luma: Luma, box: tuple[int, int, int, int] | None = None
) -> tuple[tuple[str, ...], int]:
    """Fast PDQ of ``luma`` (or of its ``box``, in luma pixels: left, top, right, bottom):
    the 8 variants' hashes and the quality."""
    left, top, right, bottom = box or (0, 0, luma.pixels.shape[1], luma.pixels.shape[0])
    s = luma.scale
    # The full-resolution side this crop stands for (the last block may be partial).
    full_h = min(bottom * s, luma.height) - top * s
    full_w = min(right * s, luma.width) - left * s
    pixels = luma.pixels[top:bottom, left:right].astype(np.float32)
    buffers = dihedral_buffers(pixels, axis_weights(full_h, s), axis_weights(full_w, s))
    return hashes_from_buffers(buffers), pdq_quality(buffers[0])


# --- bytes → ImageHashes -------------------------------------------------------------------


def _reference(data: bytes, base: dict, max_pixels: int, max_bytes: int | None) -> ImageHashes:
    try:
        arr, fmt, (width, height) = decode_rgb(data, max_pixels, max_bytes)
    except HashError as exc:
        return ImageHashes(**base, error=exc.reason, error_detail=exc.detail)
    dims = {"width": width, "height": height, "format": fmt}
    try:
        variants, quality = pdqhash.compute_dihedral(arr)
    except Exception as exc:  # the C++ side rejects degenerate arrays
        return ImageHashes(**base, **dims, error="pdq_error", error_detail=str(exc))
    hexes = tuple(PDQ.bits_to_hex(v) for v in variants)
    return ImageHashes(**base, **dims, pdq=hexes[0], pdq_quality=int(quality), pdq_variants=hexes)


def _fast(
    data: bytes, base: dict, max_pixels: int, max_bytes: int | None, trim: bool
) -> ImageHashes:
    try:
        luma = decode_luma(data, max_pixels, max_bytes)
    except HashError as exc:
        return ImageHashes(**base, error=exc.reason, error_detail=exc.detail)
    dims = {"width": luma.width, "height": luma.height, "format": luma.format}
    try:
        hexes, quality = pdq_from_luma(luma)
        extra: dict[str, object] = {}
        box = find_trim_box(luma.pixels) if trim else None
        if box is not None:
            trimmed, trimmed_quality = pdq_from_luma(luma, box)
            left, top, right, bottom = (v * luma.scale for v in box)
            extra = {
                "pdq_trimmed_variants": trimmed,
                "pdq_trimmed_quality": trimmed_quality,
                "trim_box": (left, top, min(right, luma.width), min(bottom, luma.height)),
            }
    except Exception as exc:  # numpy on a degenerate size: record, never raise
        return ImageHashes(
            **base, **dims, error="pdq_error", error_detail=f"{type(exc).__name__}: {exc}"
        )
    return ImageHashes(
        **base, **dims, pdq=hexes[0], pdq_quality=quality, pdq_variants=hexes, **extra
    )


def hash_image_bytes(
    data: bytes,
    *,
    max_pixels: int = 64_000_000,
    max_bytes: int | None = None,
    reference: bool = True,
    trim: bool = True,
) -> ImageHashes:
    """Digests always; PDQ when the bytes decode. Errors are returned, never raised.

    ``reference=False`` picks the fast path (the worker's), which also fills the
    ``pdq_trimmed_*`` fields when ``trim`` and the image has borders to cut.
    """
    sha256, md5, sha1 = digests(data)
    base = {"sha256": sha256, "md5": md5, "sha1": sha1, "size": len(data)}
    if reference:
        return _reference(data, base, max_pixels, max_bytes)
    return _fast(data, base, max_pixels, max_bytes, trim)
