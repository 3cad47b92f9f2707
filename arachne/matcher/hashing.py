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
  near-uniform borders (``trim.find_trim_box``), when there are any, and, for images of
  at most ``UPSCALE_MAX_SIDE`` pixels, the image as if upscaled 2× (``pdq.upscaled_pdq``:
  a downscaled copy of a finely textured picture matches its original only that way).

Decoding is guarded: the pixel count is checked from the header before any pixel is
decoded (decompression bombs), truncated or corrupt files become an error value, and
nothing here raises for bad input, so one bad image never fails a batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import pdqhash

from arachne.matcher.decode import HashError, decode_luma, decode_rgb
from arachne.matcher.kinds import PDQ
from arachne.matcher.pdq import pdq_from_luma, upscaled_pdq
from arachne.matcher.trim import find_trim_box

__all__ = ["HashError", "ImageHashes", "decode_rgb", "digests", "hash_image_bytes"]

TRIM_PREFIX = "trim+"
"""Variant labels of the trimmed image's hashes: ``trim+rot90`` (fits the 16-char column)."""

UPSCALED_VARIANT = "up2"
"""Variant label of the hash of the image upscaled 2× (original orientation only)."""

UPSCALE_MAX_SIDE = 1024
"""The 2× upscaled hash is computed for images whose sides are both at most this long:
aliasing of fine texture through PDQ's box window, which a downscale removes, matters only
where that window is a few pixels wide (originals up to ~2,000 pixels)."""


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
    pdq_upscaled: str | None = None  # fast path, small images: PDQ of the image upscaled 2×

    def pdq_queries(self, min_quality: int = 0) -> list[tuple[str, str]]:
        """(variant label, hash) pairs worth querying: the 8 dihedral variants, the 2×
        upscaled hash as ``up2``, then the trimmed image's 8 as ``trim+<variant>``; a set
        below ``min_quality`` is left out."""
        queries: list[tuple[str, str]] = []
        if self.pdq_variants and (self.pdq_quality or 0) >= min_quality:
            queries += zip(PDQ.VARIANTS, self.pdq_variants, strict=True)
            if self.pdq_upscaled:
                queries.append((UPSCALED_VARIANT, self.pdq_upscaled))
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
    data: bytes, base: dict, max_pixels: int, max_bytes: int | None, trim: bool, upscale: bool
) -> ImageHashes:
    try:
        luma = decode_luma(data, max_pixels, max_bytes)
    except HashError as exc:
        return ImageHashes(**base, error=exc.reason, error_detail=exc.detail)
    dims = {"width": luma.width, "height": luma.height, "format": luma.format}
    try:
        hexes, quality = pdq_from_luma(luma)
        extra: dict[str, object] = {}
        if upscale and max(luma.width, luma.height) <= UPSCALE_MAX_SIDE:
            extra["pdq_upscaled"] = upscaled_pdq(luma)
        box = find_trim_box(luma.pixels) if trim else None
        if box is not None:
            trimmed, trimmed_quality = pdq_from_luma(luma, box)
            left, top, right, bottom = (v * luma.scale for v in box)
            extra |= {
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
    upscale: bool = True,
) -> ImageHashes:
    """Digests always; PDQ when the bytes decode. Errors are returned, never raised.

    ``reference=False`` picks the fast path (the worker's), which also fills the
    ``pdq_trimmed_*`` fields when ``trim`` and the image has borders to cut, and
    ``pdq_upscaled`` when ``upscale`` and the image is small enough.
    """
    sha256, md5, sha1 = digests(data)
    base = {"sha256": sha256, "md5": md5, "sha1": sha1, "size": len(data)}
    if reference:
        return _reference(data, base, max_pixels, max_bytes)
    return _fast(data, base, max_pixels, max_bytes, trim, upscale)


def hashes_to_json(hashes: ImageHashes) -> dict[str, object]:
    """``ImageHashes`` as JSON-able values (a job argument: hashes travel, bytes never)."""
    return dataclasses.asdict(hashes)


def hashes_from_json(data: dict[str, object]) -> ImageHashes:
    """The inverse of ``hashes_to_json`` (lists back to tuples)."""
    fields = {f.name for f in dataclasses.fields(ImageHashes)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return ImageHashes(**values)  # type: ignore[arg-type]
