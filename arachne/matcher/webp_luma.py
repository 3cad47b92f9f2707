"""Luminance of a still WebP straight from libwebp's Y plane (the ``webp`` package's cffi
bindings), skipping the YUV -> RGB conversion and its chroma upsampling that Pillow's
decoder always does: 1.9x faster on the benchmark corpus's WebPs (benchmarks/hashing.py).

VP8 stores limited-range luma (16-235) computed with PDQ's own BT.601 weights, so the
full-range luminance Pillow would give is an affine map of Y: PDQ bits ignore the map
(it only moves the DC term), but PDQ's quality metric counts gradients in 0-255 units, so
the map is applied. Anything unusual (animation, a decoder error, the package missing)
returns None and the caller decodes with Pillow, which reports the proper error.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

try:
    from webp._webp import ffi, lib
except ImportError:  # pragma: no cover - optional: the fast path then uses Pillow
    ffi = lib = None

_Y_OFFSET, _Y_GAIN = 16.0, 255.0 / 219.0


def _can_bypass_filtering() -> bool:
    """The package's cffi declares only ``use_threads`` of libwebp's WebPDecoderOptions;
    ``bypass_filtering`` is the struct's first int. Write it only where the compiled layout
    is the documented one (ten ints before ``use_threads``, 19 ints in all)."""
    if ffi is None:
        return False
    try:
        layout = ffi.offsetof("WebPDecoderOptions", "use_threads")
        return layout == 40 and ffi.sizeof("WebPDecoderOptions") == 76
    except Exception:
        return False


BYPASS_FILTERING = _can_bypass_filtering()
"""Skip VP8's in-loop deblocking filter (dwebp -nofilter): 11% faster on the corpus WebPs;
the filter smooths 4x4 block edges, which PDQ's box blur removes anyway."""


def webp_luma(data: bytes, width: int, height: int, scale: int) -> np.ndarray | None:
    """Block-mean luminance (float32, ``ceil(height/scale) x ceil(width/scale)``) of the
    WebP in ``data`` whose header Pillow read as ``width`` x ``height``, or None."""
    if lib is None:
        return None
    config = ffi.new("WebPDecoderConfig*")
    if not lib.WebPInitDecoderConfig(config):
        return None
    config.output.colorspace = lib.MODE_YUV
    if BYPASS_FILTERING:
        ffi.cast("int *", ffi.addressof(config, "options"))[0] = 1
    output = ffi.addressof(config, "output")
    try:
        if lib.WebPDecode(ffi.from_buffer(data), len(data), config) != lib.VP8_STATUS_OK:
            return None
        yuv = config.output.u.YUVA
        rows, cols, stride = config.output.height, config.output.width, yuv.y_stride
        if (cols, rows) != (width, height) or stride < cols or yuv.y_size < stride * rows:
            return None
        plane = np.frombuffer(ffi.buffer(yuv.y, stride * rows), np.uint8)
        luma_y = plane.reshape(rows, stride)[:, :cols]
        # Pillow's C box reduce on the uint8 plane (copied first: libwebp frees its buffer).
        grey = Image.fromarray(np.ascontiguousarray(luma_y))
        reduced = grey.reduce(scale) if scale > 1 else grey
        pixels = np.asarray(reduced, dtype=np.float32)
    finally:
        lib.WebPFreeDecBuffer(output)
    return np.clip((pixels - _Y_OFFSET) * _Y_GAIN, 0.0, 255.0)
