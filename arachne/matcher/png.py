"""Block-mean luminance straight from plain 8-bit PNG bytes, for the hashing fast path.

Stands in for "pyspng.load -> Pillow convert("L") -> reduce(scale)": libdeflate inflates the
IDAT stream in one call, then one numba kernel unfilters the rows and emits block means of
luminance, with no full-size image or colour conversion. Anything unusual returns None and
the caller decodes with Pillow, which names the error.

Unfiltering is serial along a row (each byte needs its left neighbour: ~1-3 ns/byte as a
scalar loop), so the kernel runs a wavefront instead: _ROWS rows at once in one SIMD vector,
each row _LAG pixels behind the row above, whose results are its b and c, from registers.
"""

from __future__ import annotations

import struct
import zlib

import deflate
import numpy as np
from llvmlite import ir
from numba import njit, types, uintp
from numba.core import cgutils
from numba.extending import intrinsic

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BPP = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> bytes per pixel at bit depth 8
_MAX_RAW = 2**31  # inflated bytes; the caller's pixel cap normally binds first
_MAX_ROW = 2**22  # bytes per row: the kernel's row buffers take 16 x this (extreme shapes)
_MIN_LEN = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}  # shorter: Pillow raises
_APNG = {b"acTL", b"fcTL", b"fdAT"}  # left to Pillow
# Pillow still parses these after IDAT (load_end) and can raise; tEXt and unknown are fine.
_LATE = {b"zTXt", b"iTXt", b"iCCP", b"tRNS", b"PLTE", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"eXIf"}
_ROWS, _LAG = 8, 2  # wavefront: 8 rows x 4 bytes = 32 x i16 lanes; 2 pixels lag per row
_PAD = 4 * _LAG * (_ROWS - 1) + 8  # row-buffer margins for the lead-in and run-out


def _chunks(data: bytes) -> tuple[tuple[int, ...], bytes | None, bytes] | None:
    """(IHDR fields, PLTE body, concatenated IDAT) or None; checks every chunk's CRC."""
    if len(data) < 8 + 25 or data[:8] != _SIGNATURE:
        return None
    view = memoryview(data)
    pos, header, palette, idat, state = 8, None, None, [], 0  # state: before/in/after IDAT
    while True:
        if pos + 12 > len(data):
            return None  # no IEND
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if length >= 2**31 or end + 4 > len(data):
            return None
        body = view[pos + 8 : end]
        if deflate.crc32(body, deflate.crc32(kind)) != struct.unpack_from(">I", data, end)[0]:
            return None
        pos = end + 4
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = struct.unpack_from(">IIBBBBB", body)
        elif kind == b"IDAT":
            if state == 2:
                return None  # IDAT chunks must be consecutive
            state = 1
            idat.append(body)
            continue
        elif kind == b"IEND":
            break
        elif kind in _APNG or kind == b"IHDR" or (state and kind in _LATE):
            return None
        elif kind == b"PLTE":
            if palette is not None or length % 3 or not 0 < length <= 768:
                return None
            palette = bytes(body)
        elif length < _MIN_LEN.get(kind, 0) or not kind[0] & 32:
            return None  # malformed, or a critical chunk this decoder does not know
        state = 2 if state else 0
    _, _, depth, ctype, method, filtering, interlace = header
    if depth != 8 or ctype not in _BPP or method or filtering or interlace or not idat:
        return None
    if (ctype == 3 and palette is None) or (ctype in (0, 4) and palette is not None):
        return None  # palette images need PLTE; grey ones must not have one
    return header, palette, b"".join(idat)


def png_luma(data: bytes, scale: int) -> np.ndarray | None:
    """Block-mean luminance of a PNG held in memory, or None when this decoder does not handle
    the file (the caller then decodes it with Pillow, which gives the proper error reason).

    Element (i, j) averages rows [i*scale, (i+1)*scale) and columns [j*scale, (j+1)*scale)
    of the full image (clipped at the far edges) of 0.299 R + 0.587 G + 0.114 B, the grey
    value, or the palette entry's luminance; alpha is ignored, as Pillow's convert("L") does.
    Handles non-interlaced 8-bit grey, RGB, palette, grey+alpha and RGBA; not APNG.
    """
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"scale must be 1, 2, 4 or 8, not {scale}")
    parsed = _chunks(data)
    if parsed is None:
        return None
    (width, height, _, ctype, *_), palette, idat = parsed
    bpp = _BPP[ctype]
    expected = height * (1 + width * bpp)
    if not width or not height or expected > _MAX_RAW or width * bpp > _MAX_ROW:
        return None
    try:  # sized exactly: a stream that inflates to more or less is refused
        raw = deflate.zlib_decompress(idat, expected)
    except Exception:  # deflate.DeflateError; anything else is as unusable
        return None
    if len(raw) != expected:
        return None
    pal = np.zeros(768, np.uint8)
    pal[: len(palette or b"")] = np.frombuffer(palette or b"", np.uint8)
    npal = len(palette) // 3 if ctype == 3 else 0
    out = np.empty((-(-height // scale), -(-width // scale)), np.float32)
    ncol = 1 if ctype in (0, 4) else 3  # channels that feed the luminance
    status = _kernel(np.frombuffer(raw, np.uint8), width, height, bpp, ncol, pal, npal, scale, out)
    return out if status == 0 else None


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the kernel on a tiny image."""
    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    chunks = ((b"IHDR", header), (b"IDAT", zlib.compress(bytes(7))), (b"IEND", b""))
    png_luma(_SIGNATURE + b"".join(
        struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b)) for k, b in chunks
    ), 1)  # fmt: skip


_I8, _I16, _I32, _I64 = (ir.IntType(b) for b in (8, 16, 32, 64))


@intrinsic(prefer_literal=True)
def _wavefront(typingctx: object, inb: types.Array, outb: types.Array, prev: types.Array,
               modes: types.Array, w: types.Integer, bpp: types.Integer, pad: types.Integer,
               rows: types.IntegerLiteral, lag: types.IntegerLiteral) -> tuple | None:  # fmt: skip
    """Unfilter inb[k, pad:] into outb[k, pad:] with filter modes[k], for k < rows, where
    prev[pad:] is the row above row 0. Row k trails row k - 1 by `lag` pixels and takes its b
    and c from row k - 1's results `lag` and `lag + 1` iterations back. The zero margins make
    each row's lead-in compute zeros (so a = b = c = 0 at pixel 0) and the run-out spills
    into the far margin. A row has 4 byte lanes: those past a pixel's bytes are junk,
    overwritten by the next pixel; the lanes never mix, so a pixel's bytes stay exact.
    """
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(lag, types.IntegerLiteral)):
        return None
    K, G = rows.literal_value, lag.literal_value
    V16, V8, V32 = (ir.VectorType(t, m) for t, m in ((_I16, 4 * K), (_I8, 4 * K), (_I32, K)))

    def codegen(context, B: ir.IRBuilder, sig, args) -> ir.Value:  # noqa: ANN001
        arrs = [context.make_array(sig.args[j])(context, B, args[j]) for j in range(4)]
        in_p, out_p, prev_p, mode_p = (a.data for a in arrs)
        in_s, out_s = (cgutils.unpack_tuple(B, a.strides, 2)[0] for a in arrs[:2])
        w, bpp, pad = args[4:7]

        def c16(x: int) -> ir.Constant:
            return ir.Constant(V16, [x] * 4 * K)

        def i64(x: int) -> ir.Constant:
            return ir.Constant(_I64, x)

        def mn(x: ir.Value, y: ir.Value) -> ir.Value:
            return B.select(B.icmp_signed("<", x, y), x, y)

        def mx(x: ir.Value, y: ir.Value) -> ir.Value:
            return B.select(B.icmp_signed(">", x, y), x, y)

        def word(base: ir.Value, off: ir.Value) -> ir.Value:  # 4 bytes as one i32
            return B.bitcast(B.gep(base, [off]), _I32.as_pointer())

        mode = c16(0)  # each row's filter type in its 4 lanes
        for lane in range(4 * K):
            fk = B.zext(B.load(B.gep(mode_p, [i64(lane // 4)])), _I16)
            mode = B.insert_element(mode, fk, ir.Constant(_I32, lane))
        zero_bc = B.icmp_unsigned("<=", mode, c16(1))  # None, Sub: b = c = 0
        force = B.or_(B.icmp_unsigned("==", mode, c16(0)), B.icmp_unsigned("==", mode, c16(2)))
        is_avg = B.icmp_unsigned("==", mode, c16(3))
        entry, head, body, done = B.block, *(B.append_basic_block(n) for n in ("h", "b", "d"))
        B.branch(head)
        B.position_at_end(head)
        i, a, *hist = B.phi(_I64), B.phi(V16), *(B.phi(V32) for _ in range(G + 1))
        for phi in (i, a, *hist):
            phi.add_incoming(ir.Constant(phi.type, 0 if phi is i else [0] * len(phi.type)), entry)
        B.cbranch(B.icmp_signed("<", i, B.add(w, i64(G * (K - 1)))), body, done)
        B.position_at_end(body)
        offs = [B.add(pad, B.mul(B.sub(i, i64(G * k)), bpp)) for k in range(K)]
        r = zero32 = ir.Constant(V32, [0] * K)
        for k, off in enumerate(offs):
            src = word(B.gep(in_p, [B.mul(in_s, i64(k))]), off)
            r = B.insert_element(r, B.load(src, align=1), ir.Constant(_I32, k))
        # b and c: row 0's from prev, row k's from row k - 1's results G and G + 1 back.
        mask = ir.Constant(V32, [0] + [K + k for k in range(K - 1)])
        b, c = (B.shuffle_vector(B.insert_element(zero32, B.load(word(prev_p, o), align=1),
                                                  ir.Constant(_I32, 0)), h, mask)
                for o, h in ((offs[0], hist[G - 1]), (B.sub(offs[0], bpp), hist[G])))  # fmt: skip
        b, c, r = (B.zext(B.bitcast(v, V8), V16) for v in (b, c, r))
        bz = B.select(zero_bc, c16(0), b)
        c = B.select(force, bz, B.select(zero_bc, c16(0), c))
        # Paeth with d = b - c: the predictor is a unless a lies strictly between b and
        # e = c - 2d; in there it is max(b, c) from (3c - b) / 2 towards b (ties included),
        # else min(b, c). Checked on every (a, b, c) in the tests. None and Up force "inside"
        # with c = b (predictor b, 0 for None); Sub has b = c = 0, so never inside.
        d = B.sub(bz, c)
        e = B.sub(c, B.add(d, d))
        lo, hi = mn(bz, e), mx(bz, e)
        lo1 = B.select(force, c16(0), B.add(lo, c16(1)))
        span = B.select(force, c16(256), mx(B.sub(B.sub(hi, lo), c16(1)), c16(0)))
        t = B.sub(B.add(B.add(c, c), c), bz)
        s = B.select(B.icmp_signed(">", d, c16(0)), B.ashr(B.add(t, c16(1)), c16(1)),
                     B.add(B.ashr(t, c16(1)), c16(1)))  # fmt: skip
        whi, wlo = (B.and_(B.add(v, r), c16(255)) for v in (mx(bz, c), mn(bz, c)))
        inside = B.icmp_unsigned("<", B.sub(a, lo1), span)  # the serial part: 2 compares
        x = B.select(inside, B.select(B.icmp_signed(">=", a, s), whi, wlo),
                     B.and_(B.add(a, r), c16(255)))  # fmt: skip
        x = B.select(is_avg, B.and_(B.add(B.lshr(B.add(a, b), c16(1)), r), c16(255)), x)
        x32 = B.bitcast(B.trunc(x, V8), V32)
        for k, off in enumerate(offs):
            dst = word(B.gep(out_p, [B.mul(out_s, i64(k))]), off)
            B.store(B.extract_element(x32, ir.Constant(_I32, k)), dst, align=1)
        for phi, new in zip((i, a, *hist), (B.add(i, i64(1)), x, x32, *hist[:-1]), strict=True):
            phi.add_incoming(new, B.block)
        B.branch(head)
        B.position_at_end(done)
        return context.get_dummy_value()

    return types.void(inb, outb, prev, modes, w, bpp, pad, rows, lag), codegen


@njit(cache=True, nogil=True, boundscheck=False)
def _kernel(raw: np.ndarray, w: int, h: int, bpp: int, ncol: int, pal: np.ndarray, npal: int,
            scale: int, out: np.ndarray) -> int:  # fmt: skip
    """Fill ``out`` with block means; 1 for a bad filter byte, 2 for a bad palette index.
    Indices are unsigned (uintp) so no negative-index wraparound code lands in the loops."""
    n, w, h, scale, npal = uintp(w * bpp), uintp(w), uintp(h), uintp(scale), uintp(npal)
    one, two, pad, nrows = uintp(1), uintp(2), uintp(_PAD), uintp(_ROWS)
    inb, outb = np.zeros((_ROWS, n + 2 * pad), np.uint8), np.zeros((_ROWS, n + 2 * pad), np.uint8)
    zeros, modes = np.zeros(n + 2 * pad, np.uint8), np.zeros(_ROWS, np.uint8)
    cst = uintp(3) if npal else uintp(bpp)  # column sums hold palette entries as RGB
    sums = np.zeros(w * cst, np.uint32)  # per-byte column sums over the block's rows
    lum = np.empty(w, np.uint32)  # 1000 x luminance (1 x for grey) column sums
    unit = 1 if ncol == 1 else 1000
    for y0 in range(uintp(0), h, nrows):
        rows = min(nrows, h - y0)
        for k in range(rows):
            src, dst = raw[(y0 + k) * (n + one) :], inb[k]
            if src[0] > 4:
                return 1
            modes[k] = src[0]
            for i in range(n):
                dst[pad + i] = src[one + i]
        # The row above is the previous group's last row, read in place: this group's last
        # row overwrites it only _LAG * (_ROWS - 1) pixels behind where row 0 reads it.
        _wavefront(inb, outb, zeros if y0 == 0 else outb[_ROWS - 1], modes, w, uintp(bpp), pad,
                   _ROWS, _LAG)  # fmt: skip
        for k in range(rows):
            cur, y = outb[k][pad:], y0 + k
            if npal:
                for x in range(w):
                    p = uintp(cur[x])
                    if p >= npal:
                        return 2
                    for ch in range(uintp(3)):
                        sums[x * uintp(3) + ch] += pal[p * uintp(3) + ch]
            else:
                for i in range(n):
                    sums[i] += cur[i]
            if (y + one) % scale and y + one < h:
                continue
            # Luminance x 1000 with integer weights 299, 587, 114 per column (exact), then
            # block sums by pairwise halving (scale is a power of two): vectorisable loops.
            for x in range(w):
                i = x * cst
                if ncol == 3:
                    lum[x] = 299 * sums[i] + 587 * sums[i + one] + 114 * sums[i + two]
                else:
                    lum[x] = sums[i]
            orow, rows_in, m, step = out[y // scale], y % scale + one, w, one
            if w % scale:  # the last, narrower block
                orow[-1] = lum[w - w % scale : w].sum() / (rows_in * (w % scale) * unit)
            while step < scale:
                m, step = m // two, step * two
                for j in range(m):
                    lum[j] = lum[j * two] + lum[j * two + one]
            inv = 1.0 / (rows_in * scale * unit)
            for j in range(m):
                orow[j] = lum[j] * inv
            sums[:] = 0
    return 0
