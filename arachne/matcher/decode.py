"""Guarded decoding of image bytes held in memory: RGB for the reference path, luminance
(possibly DCT-downscaled) for the fast path.

Every failure becomes a ``HashError`` with a short reason (``not_an_image``, ``truncated``,
``decode_error``, ``decompression_bomb``, ``too_large``). The pixel cap is checked on the
header's size before any pixel is decoded, by both paths alike, so both refuse the same files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from arachne.matcher.webp_luma import webp_luma

try:  # libspng: decodes PNG ~25% faster than Pillow's libpng path; optional
    import pyspng
except ImportError:  # pragma: no cover - the fast PNG path then falls back to Pillow
    pyspng = None

# We enforce our own pixel cap before decoding; Pillow's global one would warn or raise
# at a different, process-wide limit.
Image.MAX_IMAGE_PIXELS = None

MIN_SCALE_WINDOW = 3
"""The fast path downscales by s only while PDQ's box window (ceil(short side / 128) pixels
of the full image) spans at least this many downscaled pixels. On the web-like benchmark
corpus (benchmarks/hashing.py) 3 kept every hash within 6 bits of the reference path
(p99 4); 2 was as close; 1 reached 28 bits on scanned text and fine textures."""

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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SPNG_COLOUR_TYPES = {0: 2, 2: 3, 6: 3}  # grey, RGB, RGBA (alpha ignored) -> ndim expected


def _png_first_frame(data: bytes, img: Image.Image) -> Image.Image | None:
    """The PNG's pixels decoded by libspng (``pyspng``) as a Pillow image, or None where the
    fast decoder is missing, the file is anything but a plain 8-bit grey/RGB/RGBA PNG, or
    libspng fails (truncated, corrupt): the caller then decodes the Pillow way, which gives
    the usual error reasons. Only called after ``open_checked`` applied the pixel cap to the
    same IHDR. Palette, 16-bit, sub-byte, grey+alpha and animated PNGs go to Pillow.
    """
    if pyspng is None or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    if getattr(img, "is_animated", False) or data[24] != 8:  # bit depth
        return None
    ndim = _SPNG_COLOUR_TYPES.get(data[25])  # colour type
    if ndim is None or img.mode not in ("L", "RGB", "RGBA"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = pyspng.load(data)
    except Exception:
        return None
    if arr.dtype != np.uint8 or arr.ndim != ndim or arr.shape[:2] != (img.height, img.width):
        return None
    try:
        return Image.fromarray(arr)
    except Exception:
        return None


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


def choose_scale(width: int, height: int, min_window: int = MIN_SCALE_WINDOW) -> int:
    """Largest of 8, 4, 2, 1 that keeps PDQ's box window >= ``min_window`` scaled pixels."""
    window = (min(width, height) + 127) // 128
    for scale in (8, 4, 2):
        if window >= scale * min_window:
            return scale
    return 1


def decode_luma(
    data: bytes,
    max_pixels: int,
    max_bytes: int | None = None,
    *,
    min_window: int = MIN_SCALE_WINDOW,
) -> Luma:
    """Fast decode: luminance only, downscaled by ``choose_scale`` where that is cheap.

    JPEG is downscaled in the DCT domain (Pillow ``draft``) and decoded straight to its Y
    channel, skipping chroma upsampling and colour conversion; PDQ's luma weights are JPEG's.
    Still WebP is decoded to its Y plane only (``webp_luma``). Other formats are decoded
    fully (plain 8-bit PNG by libspng where ``pyspng`` is installed, else Pillow), converted
    to L and box-reduced (``Image.reduce``).
    """
    img = open_checked(data, max_pixels, max_bytes)
    fmt = img.format
    width, height = img.size
    scale = choose_scale(width, height, min_window)
    direct = webp_luma(data, width, height, scale) if fmt == "WEBP" else None
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
    elif fmt == "PNG":
        img = _png_first_frame(data, img) or img
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
