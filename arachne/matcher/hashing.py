"""Bytes in memory → exact digests + PDQ (all 8 dihedral variants). Never touches disk.

Decoding is guarded: the pixel count is checked from the header before any pixel is
decoded (decompression bombs), truncated or corrupt files become an error value, and
nothing here raises for bad input, so one bad image never fails a batch.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from arachne.matcher.kinds import PDQ

# We enforce our own pixel cap before decoding; Pillow's global one would warn or raise
# at a different, process-wide limit.
Image.MAX_IMAGE_PIXELS = None


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


def digests(data: bytes) -> tuple[str, str, str]:
    """(sha256, md5, sha1) of the bytes."""
    return (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.sha1(data, usedforsecurity=False).hexdigest(),
    )


def decode_rgb(data: bytes, max_pixels: int) -> tuple[np.ndarray, str | None, tuple[int, int]]:
    """Decode to an RGB array (first frame). Raises ``HashError`` with a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise HashError("not_an_image", str(exc)) from None
    except Exception as exc:  # Pillow raises many types for hostile headers
        reason = "truncated" if "truncated" in str(exc).lower() else "decode_error"
        raise HashError(reason, f"{type(exc).__name__}: {exc}") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise HashError("decode_error", f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise HashError(
            "decompression_bomb", f"{width}x{height} exceeds the {max_pixels}-pixel cap"
        )
    fmt = img.format
    try:
        img.load()
        rgb = img.convert("RGB")
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "decode_error"
        raise HashError(reason, str(exc)) from None
    except Exception as exc:
        raise HashError("decode_error", f"{type(exc).__name__}: {exc}") from None
    return np.asarray(rgb), fmt, (width, height)


class HashError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def hash_image_bytes(data: bytes, *, max_pixels: int = 64_000_000) -> ImageHashes:
    """Digests always; PDQ when the bytes decode. Errors are returned, never raised."""
    sha256, md5, sha1 = digests(data)
    base = {"sha256": sha256, "md5": md5, "sha1": sha1, "size": len(data)}
    try:
        arr, fmt, (width, height) = decode_rgb(data, max_pixels)
    except HashError as exc:
        return ImageHashes(**base, error=exc.reason, error_detail=exc.detail)
    try:
        variants, quality = pdqhash.compute_dihedral(arr)
    except Exception as exc:  # the C++ side rejects degenerate arrays
        return ImageHashes(
            **base,
            width=width,
            height=height,
            format=fmt,
            error="pdq_error",
            error_detail=str(exc),
        )
    hexes = tuple(PDQ.bits_to_hex(v) for v in variants)
    return ImageHashes(
        **base,
        width=width,
        height=height,
        format=fmt,
        pdq=hexes[0],
        pdq_quality=int(quality),
        pdq_variants=hexes,
    )
