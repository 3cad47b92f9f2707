"""Guarded decoding of image bytes held in memory: RGB for the reference path, luminance
(possibly DCT-downscaled) for the fast path.

Every failure becomes a ``HashError`` with a short reason (``not_an_image``, ``truncated``,
``decode_error``, ``decompression_bomb``, ``too_large``). The pixel cap is checked on the
header's size before any pixel is decoded, by both paths alike, so both refuse the same files.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from PIL import Image, UnidentifiedImageError

from arachne.matcher.webp_luma import webp_luma

log = logging.getLogger(__name__)

# We enforce our own pixel cap before decoding; Pillow's global one would warn or raise
# at a different, process-wide limit.
Image.MAX_IMAGE_PIXELS = None

MIN_SCALE_WINDOW = 2
"""The fast path downscales by s only while PDQ's box window (ceil(short side / 128) pixels
of the full image) spans at least this many downscaled pixels and ``MIN_BOX``
full-resolution pixels."""

MIN_BOX = 6
"""Measured on the web-like corpus
(benchmarks/hashing.py): boxes of >= 2 downscaled pixels keep every hash within 6 bits of
the reference path (1 reached 26-28 bits on scanned text and fine textures); at 2 pixels,
small finely textured images (box 4-5) moved up to 10 bits at half scale, hence the floor
of 6. This rule: p99 4 bits, mean 0.59, 12% faster than >= 3 downscaled pixels."""

# Modes whose direct conversion to L equals Pillow's RGB -> L (checked in the tests).
_DIRECT_TO_L = frozenset({"L", "RGB", "RGBA", "RGBX", "P"})


class HashError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Luma:
    """Luminance of an image, maybe downscaled by an integer ``scale``.

    Pixel (i, j) of ``pixels`` averages the full image's block of rows
    [i * scale, (i + 1) * scale) and columns [j * scale, (j + 1) * scale), clipped at the far
    edges, so ``pixels.shape == (ceil(height / scale), ceil(width / scale))``.
    """

    pixels: np.ndarray  # 2-D, uint8 or float32 (block means computed in float)
    scale: int
    width: int  # full-resolution size, as the reference path sees it
    height: int
    format: str | None


def _reason(exc: BaseException) -> str:
    return "truncated" if "truncated" in str(exc).lower() else "decode_error"


def open_checked(data: bytes, max_pixels: int, max_bytes: int | None = None) -> Image.Image:
    """Parse the header only and apply the byte and pixel caps."""
    if max_bytes is not None and len(data) > max_bytes:
        raise HashError("too_large", f"{len(data)} bytes exceeds the {max_bytes}-byte cap")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise HashError("not_an_image", str(exc)) from None
    except Exception as exc:  # Pillow raises many types for hostile headers
        raise HashError(_reason(exc), f"{type(exc).__name__}: {exc}") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise HashError("decode_error", f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise HashError(
            "decompression_bomb", f"{width}x{height} exceeds the {max_pixels}-pixel cap"
        )
    return img


def _load(img: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except OSError as exc:
        raise HashError(_reason(exc), str(exc)) from None
    except Exception as exc:
        raise HashError("decode_error", f"{type(exc).__name__}: {exc}") from None


def _webp_first_frame(img: Image.Image) -> Image.Image | None:
    """The first WebP frame straight from the libwebp decoder Pillow opened, wrapped without
    a copy: Pillow's own ``load`` then copies it again through a BytesIO and the "raw"
    decoder, which took longer than libwebp's decoding itself (35 ms against 19 ms at 3 MP).

    This reads Pillow internals (``_decoder``, ``rawmode``), so anything unexpected returns
    None and the caller decodes a fresh handle the public way; a test checks both agree.
    """
    decoder, rawmode = getattr(img, "_decoder", None), getattr(img, "rawmode", None)
    if decoder is None or rawmode not in ("RGBA", "RGBX"):
        return None
    try:
        raw, _timestamp = decoder.get_next()
        if not isinstance(raw, bytes) or len(raw) != img.width * img.height * 4:
            return None
        return Image.frombuffer(rawmode, img.size, raw, "raw", rawmode, 0, 1)
    except Exception:
        return None


_png_failed = False


def _with_fast_png(call: Callable[[ModuleType], np.ndarray | None]) -> np.ndarray | None:
    """``call(png)`` with ``matcher.png`` imported on first use (it loads numba). Should its
    compiled kernel ever fail (a numba/llvmlite it was not built against), the failure is
    logged once and every PNG goes to Pillow from then on (None)."""
    global _png_failed
    if _png_failed:
        return None
    try:
        from arachne.matcher import png

        return call(png)
    except Exception:
        _png_failed = True
        log.exception("the fast PNG decoder failed; decoding PNG with Pillow from now on")
        return None


def _png_luma(data: bytes, scale: int) -> np.ndarray | None:
    """``png.png_luma``, or None where it declines the file (or is out of service)."""
    return _with_fast_png(lambda png: png.png_luma(data, scale))


def warm_up() -> None:
    """Compile (or load from disk) the fast PNG kernel, so forked workers inherit it."""
    _with_fast_png(lambda png: png.warm_up())


def decode_rgb(
    data: bytes, max_pixels: int, max_bytes: int | None = None
) -> tuple[np.ndarray, str | None, tuple[int, int]]:
    """Reference decode: the first frame as a full-resolution RGB array."""
    img = open_checked(data, max_pixels, max_bytes)
    fmt, size = img.format, img.size
    _load(img)
    try:
        rgb = img.convert("RGB")
    except Exception as exc:
        raise HashError("decode_error", f"{type(exc).__name__}: {exc}") from None
    return np.asarray(rgb), fmt, size


def choose_scale(
    width: int, height: int, min_window: int = MIN_SCALE_WINDOW, min_box: int = MIN_BOX
) -> int:
    """Largest of 8, 4, 2, 1 that keeps PDQ's box window >= ``min_window`` scaled pixels
    and >= ``min_box`` full-resolution pixels."""
    window = (min(width, height) + 127) // 128
    for scale in (8, 4, 2):
        if window >= max(scale * min_window, min_box):
            return scale
    return 1


def decode_luma(
    data: bytes,
    max_pixels: int,
    max_bytes: int | None = None,
    *,
    min_window: int = MIN_SCALE_WINDOW,
    min_box: int = MIN_BOX,
) -> Luma:
    """Fast decode: luminance only, downscaled by ``choose_scale`` where that is cheap.

    JPEG is downscaled in the DCT domain (Pillow ``draft``) and decoded straight to its Y
    channel, skipping chroma upsampling and colour conversion; PDQ's luma weights are JPEG's.
    Still WebP is decoded to its Y plane only (``webp_luma``), plain PNG straight to block
    means of luminance (``png.png_luma``). Anything else, and any file those decline, is
    decoded by Pillow, converted to L and box-reduced (``Image.reduce``).
    """
    img = open_checked(data, max_pixels, max_bytes)
    fmt = img.format
    width, height = img.size
    scale = choose_scale(width, height, min_window, min_box)
    direct = None
    if fmt == "WEBP":
        direct = webp_luma(data, width, height, scale)
    elif fmt == "PNG":
        direct = _png_luma(data, scale)
    if direct is not None:
        return Luma(direct, scale, width, height, fmt)
    drafted = 1
    if fmt == "JPEG":
        mode = "L" if img.mode in ("RGB", "L") else None  # CMYK: scale only
        size = (width // scale, height // scale)  # draft then picks exactly `scale`
        try:
            res = img.draft(mode, size)
        except Exception as exc:
            raise HashError("decode_error", f"{type(exc).__name__}: {exc}") from None
        if res is not None:
            drafted = round(width / res[1][2])
    if fmt == "WEBP":
        img = _webp_first_frame(img) or open_checked(data, max_pixels, max_bytes)
    _load(img)
    try:
        grey = img.convert("L") if img.mode in _DIRECT_TO_L else img.convert("RGB").convert("L")
        factor = scale // drafted
        if factor > 1:
            grey = grey.reduce(factor)
    except Exception as exc:
        raise HashError("decode_error", f"{type(exc).__name__}: {exc}") from None
    pixels = np.asarray(grey)
    expected = (-(-height // scale), -(-width // scale))
    if pixels.shape != expected:  # a decoder that scaled differently: never guess
        raise HashError("decode_error", f"scaled to {pixels.shape}, expected {expected}")
    return Luma(pixels, scale, width, height, fmt)
