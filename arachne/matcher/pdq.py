"""PDQ on luminance in numpy: PDQ's downsampling as linear maps, its DCT, median bits and
quality, exactly as Meta's C++ computes them on the same 64×64 buffer.

PDQ blurs with two box passes and keeps 64 samples per side: one (64 × n) matrix per side
(``axis_weights``), which also absorbs a decoder's integer downscale, so the blur is not
redone on top of it. ``upscaled_axis_weights`` is the same for the side upscaled 2×.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from arachne.matcher.decode import Luma

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
    return _fold(weights, scale)


def _fold(weights: np.ndarray, scale: int) -> np.ndarray:
    """Sum each run of ``scale`` columns (one downscaled pixel stands for them) and freeze."""
    if scale > 1:
        length = weights.shape[1]
        n = -(-length // scale)
        weights = np.pad(weights, ((0, 0), (0, n * scale - length)))
        weights = weights.reshape(64, n, scale).sum(axis=2)
    out = weights.astype(np.float32)
    out.setflags(write=False)  # cached and shared between calls
    return out


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (Pillow's BICUBIC)."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=64)
def upscaled_axis_weights(length: int, scale: int = 1, factor: int = 2) -> np.ndarray:
    """PDQ's downsampling of this side bicubically upscaled ``factor`` times, as one
    (64, ceil(length/scale)) matrix on the same pixels as ``axis_weights``.

    Why: on an image with fine texture, PDQ's small box window at the original size lets
    texture alias into the hash; a downscaled copy has lost that alias, so its own hash is
    far off (58 bits on skimage_brick at half size). Hashing the copy as if it were
    ``factor`` times larger reproduces the original's sampling and its alias (2 bits).
    The upscale is a 4-tap filter per output pixel; its taps are folded into PDQ's weights
    with segment sums (each tap's input index rises with the output index).
    """
    big = axis_weights(length * factor).astype(np.float64)  # (64, length * factor)
    centres = (np.arange(length * factor) + 0.5) / factor
    first = np.floor(centres - 2.5).astype(np.int64) + 1
    taps = first[:, None] + np.arange(4)  # (length * factor, 4) input pixels
    weights = _cubic(taps + 0.5 - centres[:, None])
    inside = (taps >= 0) & (taps < length)
    weights = np.where(inside, weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)  # Pillow renormalises at the edges
    taps = np.clip(taps, 0, length - 1)
    folded = np.zeros((64, length))
    for t in range(4):
        cols = taps[:, t]
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        folded[:, cols[starts]] += np.add.reduceat(big * weights[:, t], starts, axis=1)
    return _fold(folded, scale)


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
    pixels = luma.pixels[top:bottom, left:right].astype(np.float32, copy=False)
    buffers = dihedral_buffers(pixels, axis_weights(full_h, s), axis_weights(full_w, s))
    return hashes_from_buffers(buffers), pdq_quality(buffers[0])


def upscaled_pdq(luma: Luma, factor: int = 2) -> str:
    """PDQ (original orientation) of the image bicubically upscaled ``factor`` times."""
    rows = upscaled_axis_weights(luma.height, luma.scale, factor)
    cols = upscaled_axis_weights(luma.width, luma.scale, factor)
    buffer = rows @ luma.pixels.astype(np.float32, copy=False) @ cols.T
    return hashes_from_buffers(buffer[None])[0]
