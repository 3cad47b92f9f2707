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
    start, local = local_axis_weights(length, scale)
    dense = _spread(start, local, -(-length // scale)).astype(np.float32)
    dense.setflags(write=False)  # cached and shared between calls
    return dense


@lru_cache(maxsize=128)
def local_axis_weights(length: int, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``axis_weights`` row by row: row i's weights ``local[i]`` (float32) apply to the
    (downscaled) pixels from ``start[i]`` on; weights outside the side are zero. The passes
    read only those pixels (``_row_pass``, ``_column_pass``): 2-4x faster than the dense
    products on the corpus sizes."""
    return _fold_local(*_local_weights(length), scale)


def _align(start: np.ndarray, local: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same rows shifted so each starts on a multiple of ``k``: returns ``first`` and
    ``aligned`` (64, blocks * k) whose column j is pixel ``first * k + j``."""
    shift = start % k
    blocks = -(-(local.shape[1] + k - 1) // k)
    aligned = np.zeros((64, blocks * k))
    aligned[np.arange(64)[:, None], shift[:, None] + np.arange(local.shape[1])] = local
    return (start - shift) // k, aligned


def _fold_local(start: np.ndarray, local: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum runs of ``scale`` full-resolution columns aligned to whole blocks (one
    downscaled pixel stands for them), as float32, frozen: cached and shared."""
    if scale > 1:
        start, aligned = _align(start, local, scale)
        local = aligned.reshape(64, -1, scale).sum(axis=2)
    local = local.astype(np.float32)
    for arr in (start, local):
        arr.setflags(write=False)
    return start, local


def _local_weights(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Row i of PDQ's map as ``local[i]``, which starts at pixel ``start[i]``: each row only
    spans a few times PDQ's box window, so work stays proportional to that, not the side."""
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
    start = lo[lo[centres]]
    span = int((hi[hi[centres]] - start).max()) + 1
    acc = np.zeros((64, span + 1))
    np.add.at(acc, (rows, lo[o] - start[rows]), u)
    np.add.at(acc, (rows, hi[o] + 1 - start[rows]), -u)
    local = np.cumsum(acc, axis=1)[:, :span]
    local[np.abs(local) < 1e-9] = 0.0  # the cumsum leaves ~1e-17 past each window
    return start, local


def _spread(start: np.ndarray, local: np.ndarray, length: int) -> np.ndarray:
    """The dense (64, length) matrix of rows ``local`` placed at ``start``; columns outside
    the side (zero weights by construction) are dropped."""
    cols = start[:, None] + np.arange(local.shape[1])
    keep = (cols >= 0) & (cols < length)
    dense = np.zeros((64, length))
    dense[np.nonzero(keep)[0], cols[keep]] = local[keep]
    return dense


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (Pillow's BICUBIC)."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def upscaled_axis_weights(length: int, scale: int = 1, factor: int = 2) -> np.ndarray:
    """``upscaled_local_weights`` as one dense (64, ceil(length/scale)) matrix."""
    start, local = upscaled_local_weights(length, scale, factor)
    return _spread(start, local, -(-length // scale)).astype(np.float32)


@lru_cache(maxsize=64)
def upscaled_local_weights(
    length: int, scale: int = 1, factor: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """PDQ's downsampling of this side bicubically upscaled ``factor`` times, row by row
    on the same pixels as ``local_axis_weights``.

    Why: on an image with fine texture, PDQ's small box window at the original size lets
    texture alias into the hash; a downscaled copy has lost that alias, so its own hash is
    far off (58 bits on skimage_brick at half size). Hashing the copy as if it were
    ``factor`` times larger reproduces the original's sampling and its alias (2 bits).
    The upscale is a 4-tap filter per output pixel. Output pixel ``factor * m + phase``
    takes its taps from input pixels ``m + offset``, so each (phase, tap) pair folds into
    PDQ's weights as one shifted, weighted slice: 4 * factor vector operations.
    """
    size = length * factor
    start, local = _local_weights(size)
    # Align each row to a whole input pixel: column k of `rows` is output pixel
    # base * factor + k, so its phase is k % factor and its m is base + k // factor.
    base, rows = _align(start, local, factor)
    per_m = rows.shape[1] // factor
    centres = (np.arange(size) + 0.5) / factor
    taps = (np.floor(centres - 2.5).astype(np.int64) + 1)[:, None] + np.arange(4)
    weights = np.where((taps >= 0) & (taps < length), _cubic(taps + 0.5 - centres[:, None]), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)  # Pillow renormalises at the edges
    offsets = taps[:factor]  # m = 0: input pixel = m + offset for every m
    low = int(offsets.min())
    folded = np.zeros((64, per_m + int(offsets.max()) - low))
    m = base[:, None] + np.arange(per_m)
    inside = m < length  # beyond the side `rows` is zero anyway; keep the gather in range
    m = np.minimum(m, length - 1)
    for phase in range(factor):
        outputs = rows[:, phase::factor]  # (64, per_m): output pixel factor * m + phase
        for t in range(4):
            gain = np.where(inside, weights[factor * m + phase, t], 0.0)
            first = int(offsets[phase, t]) - low
            folded[:, first : first + per_m] += outputs * gain
    return _fold_local(base + low, folded, scale)


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
    return _variants(both_rows @ (pixels @ both_cols.T))


def _gather_index(start: np.ndarray, span: int, n: int, flips: bool) -> np.ndarray:
    """Pixel indices each row of weights reads (clipped where its weights are zero),
    then, with ``flips``, the same rows on the mirrored side."""
    idx = np.clip(start[:, None] + np.arange(span), 0, n - 1)
    return np.concatenate([idx, n - 1 - idx]) if flips else idx


def _row_pass(
    pixels: np.ndarray, start: np.ndarray, local: np.ndarray, flips: bool = True
) -> np.ndarray:
    """``rows @ pixels`` (64 or, with the upside-down image's, 128 rows) reading each
    output row's few pixel rows: whole rows, so the gather is a few memcpys."""
    idx = _gather_index(start, local.shape[1], pixels.shape[0], flips)
    weights = np.concatenate([local, local]) if flips else local
    return np.matmul(weights[:, None, :], pixels[idx])[:, 0, :]


def _column_pass(
    pixels: np.ndarray, start: np.ndarray, local: np.ndarray, flips: bool = True
) -> np.ndarray:
    """``pixels @ cols.T`` (with the mirrored image's columns appended) reading each
    output column's few pixels. Run on the row pass's 128 rows, not the image."""
    idx = _gather_index(start, local.shape[1], pixels.shape[1], flips)
    weights = np.concatenate([local, local]) if flips else local
    gathered = pixels[:, idx].transpose(1, 0, 2)  # (outputs, rows, span)
    return np.matmul(gathered, weights[:, :, None])[:, :, 0].T


def _variants(full: np.ndarray) -> np.ndarray:
    """The 8 buffers from [[orig, flip lr], [flip ud, rot180]] (128 × 128)."""
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
    rows = _row_pass(pixels, *local_axis_weights(full_h, s))  # (128, w)
    buffers = _variants(_column_pass(rows, *local_axis_weights(full_w, s)))
    return hashes_from_buffers(buffers), pdq_quality(buffers[0])


def upscaled_pdq(luma: Luma, factor: int = 2) -> str:
    """PDQ (original orientation) of the image bicubically upscaled ``factor`` times."""
    pixels = luma.pixels.astype(np.float32, copy=False)
    rows = _row_pass(pixels, *upscaled_local_weights(luma.height, luma.scale, factor), False)
    buffer = _column_pass(rows, *upscaled_local_weights(luma.width, luma.scale, factor), False)
    return hashes_from_buffers(buffer[None])[0]
