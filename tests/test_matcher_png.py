"""The fast PNG luminance decoder (arachne.matcher.png) against Pillow as the oracle.

Every PNG here is built in memory: by Pillow, or by the small spec encoder below, which
filters each row with a chosen filter type so that all five are covered on every layout.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from arachne.matcher.png import png_luma, warm_up
from tests.conftest import png_chunk

SCALES = (1, 2, 4, 8)
BPP = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> bytes per pixel
MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
SIZES = ((1, 1), (7, 5), (33, 17), (130, 97), (3, 41), (67, 2))  # (width, height)


def paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The PNG spec's Paeth predictor, as written there."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_rows(pixels: np.ndarray, bpp: int, filters: Sequence[int]) -> bytes:
    """Scanlines of ``pixels`` ((height, width * bpp) uint8), row y filtered with filters[y]."""
    x = pixels.astype(np.int32)
    out = bytearray()
    for y, f in enumerate(filters):
        b = x[y - 1] if y else np.zeros_like(x[y])
        a = np.concatenate([np.zeros(bpp, np.int32), x[y, :-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int32), b[:-bpp]])
        pred = (0, a, b, (a + b) // 2, paeth(a, b, c) if f == 4 else 0)[f]
        out.append(f)
        out += ((x[y] - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def encode(
    pixels: np.ndarray,
    ctype: int,
    filters: Sequence[int],
    palette: bytes | None = None,
    *,
    level: int = 6,
    header: bytes | None = None,
    idat: bytes | None = None,
    extra: Sequence[bytes] = (),
) -> bytes:
    """A PNG from raw pixels (height, width * bpp), with the given filter per row."""
    height, n = pixels.shape
    width = n // BPP[ctype]
    header = header or struct.pack(">IIBBBBB", width, height, 8, ctype, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(filter_rows(pixels, BPP[ctype], filters), level)
    parts = [png_chunk(b"IHDR", header), *extra]
    if palette is not None:
        parts.append(png_chunk(b"PLTE", palette))
    parts += [png_chunk(b"IDAT", idat), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def block_means(y: np.ndarray, scale: int) -> np.ndarray:
    h, w = y.shape
    rows, cols = np.arange(0, h, scale), np.arange(0, w, scale)
    sums = np.add.reduceat(np.add.reduceat(y, rows, axis=0), cols, axis=1)
    counts = np.outer(np.minimum(rows + scale, h) - rows, np.minimum(cols + scale, w) - cols)
    return sums / counts


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def oracle(data: bytes, scale: int) -> np.ndarray:
    """Block means computed in float64 from Pillow's decode."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("L", "LA"):
            y = np.asarray(img.convert("L"), np.float64)
        else:
            y = luma(np.asarray(img.convert("RGB"), np.float64))
    return block_means(y, scale)


def assert_matches(data: bytes, scale: int) -> None:
    got = png_luma(data, scale)
    assert got is not None
    want = oracle(data, scale)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3


def random_pixels(
    rng: np.random.Generator, w: int, h: int, ctype: int, npal: int = 256
) -> np.ndarray:
    """Half the time noise, else smooth ramps plus noise (Pillow then varies its filters)."""
    bpp = BPP[ctype]
    if ctype == 3:
        return rng.integers(0, npal, (h, w), dtype=np.uint8)
    if rng.random() < 0.5:
        return rng.integers(0, 256, (h, w * bpp), dtype=np.uint8)
    ramp = np.add.outer(np.arange(h) * 3, np.arange(w * bpp) // bpp * 2)
    return ((ramp + rng.integers(-4, 5, (h, w * bpp))) % 256).astype(np.uint8)


def pillow_png(pixels: np.ndarray, ctype: int, palette: bytes | None, **params: object) -> bytes:
    h, n = pixels.shape
    w, bpp = n // BPP[ctype], BPP[ctype]
    shaped = pixels if bpp == 1 else pixels.reshape(h, w, bpp)
    img = Image.fromarray(shaped, "L" if ctype == 3 else MODES[ctype])
    if ctype == 3:
        img = img.convert("P")
        img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, "PNG", **params)
    return buf.getvalue()


@pytest.mark.parametrize("ctype", sorted(BPP))
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("params", [{}, {"compress_level": 0}, {"compress_level": 9}])
def test_matches_pillow_on_pillow_encoded_images(
    ctype: int, size: tuple[int, int], params: dict[str, int]
) -> None:
    rng = np.random.default_rng([ctype, *size, len(params)])
    palette = rng.integers(0, 256, 768, dtype=np.uint8).tobytes()
    data = pillow_png(random_pixels(rng, *size, ctype), ctype, palette, **params)
    for scale in SCALES:
        assert_matches(data, scale)


@pytest.mark.parametrize("ctype", sorted(BPP))
@pytest.mark.parametrize("filters", [0, 1, 2, 3, 4, "mixed"])
def test_every_filter_type(ctype: int, filters: int | str) -> None:
    rng = np.random.default_rng([ctype, 99 if filters == "mixed" else filters])
    npal = 37
    palette = rng.integers(0, 256, 3 * npal, dtype=np.uint8).tobytes() if ctype == 3 else None
    for w, h in SIZES:
        pixels = random_pixels(rng, w, h, ctype, npal)
        per_row = rng.integers(0, 5, h) if filters == "mixed" else [filters] * h
        data = encode(pixels, ctype, per_row, palette)
        for scale in SCALES:
            assert_matches(data, scale)


def de_bruijn_pairs() -> np.ndarray:
    """A byte sequence holding every ordered pair of bytes as neighbours (length 65537)."""
    seq, a = [], [0] * 512

    def db(t: int, p: int) -> None:  # the standard recursive construction, order 2
        if t > 2:
            if 2 % p == 0:
                seq.extend(a[1 : p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, 256):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    return np.array([*seq, seq[0]], np.uint8)


@pytest.mark.parametrize("ctype", [0, 2])
def test_paeth_on_every_left_up_upleft_triple(ctype: int) -> None:
    """Each Paeth-filtered row pair puts every (c, b) byte pair above a constant left byte a,
    which runs through all 256 values (for RGB the channels share them; lanes run the same
    code). The source pixels are the oracle."""
    pairs = de_bruijn_pairs()
    lanes = 3 if ctype == 2 else 1
    rows = []
    for k in range(-(-256 // lanes)):
        rows.append(np.repeat(pairs, lanes))  # (c, b) neighbours above...
        a = (np.arange(lanes) + k * lanes) % 256  # ...a constant left neighbour below
        rows.append(np.tile(a, len(pairs)).astype(np.uint8))
    pixels = np.stack(rows)
    data = encode(pixels, ctype, [4] * len(rows), level=1)
    got = png_luma(data, 1)
    want = pixels if ctype == 0 else luma(pixels.reshape(len(rows), -1, 3).astype(np.float64))
    assert got is not None and np.abs(got - want).max() < 1e-3


def test_seeded_random_images_match_pillow() -> None:
    rng = np.random.default_rng(20261125)
    for _ in range(60):
        ctype = int(rng.choice(sorted(BPP)))
        w, h = (int(v) for v in rng.integers(1, 50, 2))
        npal = int(rng.integers(1, 257))
        palette = rng.integers(0, 256, 3 * npal, dtype=np.uint8).tobytes() if ctype == 3 else None
        data = encode(random_pixels(rng, w, h, ctype, npal), ctype, rng.integers(0, 5, h), palette)
        assert_matches(data, int(rng.choice(SCALES)))


def test_alpha_is_ignored() -> None:
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (9, 11 * 4), dtype=np.uint8)
    opaque = rgba.copy()
    opaque[:, 3::4] = 255
    a, b = (png_luma(encode(p, 6, [4] * 9), 2) for p in (rgba, opaque))
    assert a is not None and np.array_equal(a, b)


def _sample(ctype: int = 2, w: int = 20, h: int = 12) -> bytes:
    pixels = random_pixels(np.random.default_rng(1), w, h, ctype)
    return encode(pixels, ctype, [4] * h)


def _with_filter_byte(value: int) -> bytes:
    pixels = random_pixels(np.random.default_rng(2), 8, 6, 2)
    raw = bytearray(filter_rows(pixels, 3, [1] * 6))
    raw[3 * (1 + 8 * 3)] = value  # the fourth row's filter byte
    return encode(pixels, 2, [], idat=zlib.compress(bytes(raw)))


def _flip(data: bytes, offset: int, fix_crc: bool = False) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x10
    if fix_crc:  # recompute the IDAT chunk's CRC so only the zlib stream is broken
        start = data.index(b"IDAT") - 4
        length = struct.unpack_from(">I", data, start)[0]
        end = start + 8 + length
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[start + 4 : end])))
    return bytes(out)


@functools.cache
def _refused_cases() -> dict[str, bytes]:
    good = _sample()
    pixels = random_pixels(np.random.default_rng(3), 10, 4, 2)
    idat_at = good.index(b"IDAT") + 4
    palette = bytes(range(30))  # 10 entries
    big_index = np.full((3, 4), 10, np.uint8)
    header = struct.pack(">IIBBBBB", 10, 4, 8, 2, 0, 0, 0)
    stream = zlib.compress(filter_rows(pixels, 3, [0] * 4))

    def with_header(**fields: int) -> bytes:
        values = dict(w=10, h=4, depth=8, ctype=2, interlace=0) | fields
        body = struct.pack(">IIBBBBB", values["w"], values["h"], values["depth"],
                           values["ctype"], 0, 0, values["interlace"])  # fmt: skip
        return encode(pixels, 2, [0] * 4, header=body)

    cases = {f"truncated at {n}": good[:n] for n in (0, 8, 20, 33, idat_at + 5, len(good) - 1)}
    cases |= {
        "flipped IDAT byte (bad CRC)": _flip(good, idat_at + 10),
        "flipped IDAT byte (CRC fixed, zlib broken)": _flip(good, idat_at + 10, fix_crc=True),
        "bad IHDR CRC": _flip(good, 29),
        "filter byte 5": _with_filter_byte(5),
        "filter byte 255": _with_filter_byte(255),
        "interlaced": with_header(interlace=1),
        "16-bit": with_header(depth=16),
        "1-bit": with_header(depth=1),
        "zero width": with_header(w=0),
        "zero height": with_header(h=0),
        "row too long for the buffers": encode(
            np.zeros((1, 3 * 2**21), np.uint8), 2, [0], idat=zlib.compress(bytes(1 + 3 * 2**21))
        ),
        "unknown colour type": with_header(ctype=5),
        "palette index out of range": encode(big_index, 3, [0] * 3, palette),
        "palette without PLTE": encode(big_index, 3, [0] * 3),
        "grey with PLTE": encode(big_index, 0, [0] * 3, palette),
        "missing IDAT": good[: good.index(b"IDAT") - 4] + png_chunk(b"IEND", b""),
        "missing IEND": good[: good.index(b"IEND") - 4],
        "IHDR not the first chunk": good[:8] + png_chunk(b"tEXt", b"k\0v") + good[8:],
        "IDAT chunks not consecutive": good[:8]
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", stream[:20])
        + png_chunk(b"tEXt", b"k\0v")
        + png_chunk(b"IDAT", stream[20:])
        + png_chunk(b"IEND", b""),
        "APNG": encode(pixels, 2, [0] * 4, extra=[png_chunk(b"acTL", bytes(8))]),
        "unknown critical chunk": encode(pixels, 2, [0] * 4, extra=[png_chunk(b"ABCD", b"")]),
        "short gAMA": encode(pixels, 2, [0] * 4, extra=[png_chunk(b"gAMA", b"\0")]),
        "chunk length past the end": good[:33] + struct.pack(">I", 2**30) + good[37:],
        "too little image data": encode(pixels, 2, [], idat=zlib.compress(bytes(10))),
        "too much image data": encode(pixels, 2, [], idat=zlib.compress(bytes(200))),
        "garbage after the signature": good[:8] + bytes(range(40)),
        "not a PNG": b"GIF89a" + bytes(100),
        "header only": good[:33],
        "wrong IHDR length": good[:8] + png_chunk(b"IHDR", header + b"\0") + good[33:],
    }
    return cases


@pytest.mark.parametrize("name", sorted(_refused_cases()))
def test_refuses(name: str) -> None:
    data = _refused_cases()[name]
    assert png_luma(data, 2) is None


def test_refusal_fixtures_are_otherwise_valid() -> None:
    """The fixtures differ from files the decoder takes only in what they name."""
    pixels = random_pixels(np.random.default_rng(3), 10, 4, 2)
    stream = zlib.compress(filter_rows(pixels, 3, [0] * 4))
    header = struct.pack(">IIBBBBB", 10, 4, 8, 2, 0, 0, 0)
    split = png_chunk(b"IDAT", stream[:20]) + png_chunk(b"IDAT", stream[20:])
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + split + png_chunk(b"IEND", b"")
    for valid in (_sample(), _with_filter_byte(4), data):
        assert png_luma(valid, 2) is not None


def test_ancillary_chunks_after_idat_are_accepted_when_harmless() -> None:
    pixels = random_pixels(np.random.default_rng(4), 6, 5, 2)
    base = encode(pixels, 2, [4] * 5)
    data = (
        base[:-12] + png_chunk(b"tEXt", b"Comment\0hi") + png_chunk(b"tIME", bytes(7)) + base[-12:]
    )
    assert png_luma(data, 1) is not None
    assert np.array_equal(png_luma(data, 1), png_luma(base, 1))


def test_bad_scale_raises() -> None:
    with pytest.raises(ValueError):
        png_luma(_sample(), 3)


def test_warm_up_runs() -> None:
    warm_up()
