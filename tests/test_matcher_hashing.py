"""Hashing bytes in memory: reference PDQ conformance, dihedral variants, digests, hostile and
odd inputs; and the hash kinds (validation, distance)."""

from __future__ import annotations

import csv
import hashlib
import io
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.matcher.kinds import KINDS, MD5, PDQ, SHA1, SHA256
from tests.conftest import png_chunk

VECTORS = Path("/work/shared/data/pdq-vectors")
REPO = VECTORS / "repo"
DIH = REPO / "pdq/data/reg-test-input/dih"
PHOTOS = Path("/work/shared/data/photos")


def reference_rows() -> list[object]:
    lines = (VECTORS / "expected/python_threatexchange_pdqhash.csv").read_text().splitlines()
    assert lines[0].startswith("path,pdq_hex,quality,note")
    rows = [r for r in csv.reader(lines[1:]) if r]
    assert len(rows) == 17
    return [pytest.param(r[0], r[1], r[2], id=Path(r[0]).name) for r in rows]


def encode(img: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


@cache
def photo() -> Image.Image:
    """A benign photo, downscaled so the tests stay fast."""
    img = Image.open(PHOTOS / "skimage_astronaut.png").convert("RGB")
    img.thumbnail((256, 256))
    return img


def bits(hex_value: str) -> int:
    """Set bits, counted from the bytes (independent of PDQ.distance)."""
    return sum(bin(b).count("1") for b in bytes.fromhex(hex_value))


def hamming(a: str, b: str) -> int:
    return sum(
        bin(x ^ y).count("1") for x, y in zip(bytes.fromhex(a), bytes.fromhex(b), strict=True)
    )


# --- conformance with the reference ------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected", "quality"), reference_rows())
def test_reference_pdq_vectors_exactly(path: str, expected: str, quality: str) -> None:
    data = (REPO / path).read_bytes()
    h = hash_image_bytes(data)
    assert h.error is None, h.error_detail
    assert h.pdq == expected
    if quality:
        assert h.pdq_quality == int(quality)


@cache
def dihedral_hashes() -> dict[str, ImageHashes]:
    files = sorted(DIH.iterdir())
    assert [f.name for f in files] == [
        "bridge-1-original.jpg",
        "bridge-2-rotate-90.jpg",
        "bridge-3-rotate-180.jpg",
        "bridge-4-rotate-270.jpg",
        "bridge-5-flipx.jpg",
        "bridge-6-flipy.jpg",
        "bridge-7-flip-plus-1.jpg",
        "bridge-8-flip-minus-1.jpg",
    ]
    return {f.name: hash_image_bytes(f.read_bytes()) for f in files}


def test_dihedral_files_match_each_other_through_variants() -> None:
    hashes = dihedral_hashes()
    for a_name, a in hashes.items():
        assert a.error is None
        assert len(a.pdq_variants) == 8
        assert a.pdq_variants[0] == a.pdq
        for b_name, b in hashes.items():
            best = min(hamming(v, b.pdq) for v in a.pdq_variants)
            assert best <= 31, (a_name, b_name, best)
            if a_name != b_name:
                # Without the variants, a rotated or flipped copy is nowhere near.
                assert hamming(a.pdq, b.pdq) > 31, (a_name, b_name)


def test_variant_names_follow_the_reference_files() -> None:
    hashes = dihedral_hashes()
    original = hashes["bridge-1-original.jpg"]
    labels = {
        "bridge-1-original.jpg": "original",
        "bridge-2-rotate-90.jpg": "rot90",
        "bridge-3-rotate-180.jpg": "rot180",
        "bridge-4-rotate-270.jpg": "rot270",
        "bridge-5-flipx.jpg": "flipx",
        "bridge-6-flipy.jpg": "flipy",
        "bridge-7-flip-plus-1.jpg": "flip_plus1",
        "bridge-8-flip-minus-1.jpg": "flip_minus1",
    }
    for name, label in labels.items():
        dists = [hamming(v, hashes[name].pdq) for v in original.pdq_variants]
        assert PDQ.VARIANTS[dists.index(min(dists))] == label


# --- digests and fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        (PHOTOS / "imgaug_quokka.jpg").read_bytes(),
        b"<html>not an image</html>",
        b"",
    ],
    ids=["photo", "html", "empty"],
)
def test_digests_equal_hashlib(data: bytes) -> None:
    h = hash_image_bytes(data)
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.md5 == hashlib.md5(data).hexdigest()
    assert h.sha1 == hashlib.sha1(data).hexdigest()
    assert h.size == len(data)
    assert MD5.hash_bytes(data) == h.md5
    assert SHA1.hash_bytes(data) == h.sha1
    assert SHA256.hash_bytes(data) == h.sha256


def test_photo_fields_and_variants() -> None:
    data = (PHOTOS / "imgaug_quokka.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
    h = hash_image_bytes(data)
    assert h.error is None
    assert (h.width, h.height) == size
    assert h.format == "JPEG"
    assert h.pdq_quality is not None and h.pdq_quality >= 50
    assert len(h.pdq_variants) == 8
    assert h.pdq_variants[0] == h.pdq
    assert len(set(h.pdq_variants)) == 8
    for v in h.pdq_variants:
        assert PDQ.validate(v) == v
    js = h.as_json()
    assert js["pdq"] == h.pdq and js["quality"] == h.pdq_quality and js["error"] is None
    assert "pdq_variants" not in js


# --- hostile and broken input ------------------------------------------------------------------


def test_truncated_jpeg() -> None:
    data = (PHOTOS / "imgaug_quokka.jpg").read_bytes()
    cut = data[: len(data) // 2]
    h = hash_image_bytes(cut)
    assert h.error == "truncated"
    assert h.pdq is None and h.pdq_variants == () and h.pdq_quality is None
    assert h.sha256 == hashlib.sha256(cut).hexdigest()
    assert h.md5 == hashlib.md5(cut).hexdigest()
    assert h.size == len(cut)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bomb_png()
    with Image.open(io.BytesIO(data)) as img:  # the header is what we claim
        assert img.size == (50_000, 50_000)
    small = encode(photo())
    decoded: list[object] = []
    original = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> object:
        decoded.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    assert hash_image_bytes(small).error is None
    assert decoded  # the recorder sees a normal decode
    decoded.clear()
    h = hash_image_bytes(data)
    assert h.error == "decompression_bomb"
    assert "50000x50000" in (h.error_detail or "")
    assert decoded == []  # no pixel buffer was ever asked for
    assert h.pdq is None
    assert h.sha256 == hashlib.sha256(data).hexdigest()


def test_pixel_cap_boundary() -> None:
    data = encode(photo().resize((100, 80)))
    assert hash_image_bytes(data, max_pixels=8000).error is None
    assert hash_image_bytes(data, max_pixels=7999).error == "decompression_bomb"


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        b"<!doctype html><html><body><img src=x.jpg></body></html>",
        b"",
        b"\x89PNG\r\n",
    ],
    ids=["random", "html", "empty", "png-magic-only"],
)
def test_not_an_image(data: bytes) -> None:
    h = hash_image_bytes(data)
    assert h.error == "not_an_image"
    assert h.pdq is None
    assert h.md5 == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (3, 2)])
def test_tiny_images_do_not_crash(size: tuple[int, int]) -> None:
    h = hash_image_bytes(encode(Image.new("RGB", size, (10, 200, 30))))
    assert (h.width, h.height) == size
    if h.error is None:
        assert h.pdq is not None and len(h.pdq) == 64
        assert h.pdq_quality is not None and h.pdq_quality < 50
    else:
        assert h.error == "pdq_error" and h.pdq is None


# --- image modes and formats -------------------------------------------------------------------


def test_animated_gif_hashes_its_first_frame() -> None:
    palette = np.array([[20, 20, 20], [230, 230, 230], [200, 40, 40], [40, 40, 200]], np.uint8)

    def frame(seed: int) -> Image.Image:
        cells = np.random.default_rng(seed).integers(0, 4, (8, 8))
        return Image.fromarray(palette[np.kron(cells, np.ones((16, 16), dtype=int))])

    first, second = frame(1), frame(2)
    gif = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(io.BytesIO(gif)) as img:
        assert img.n_frames == 2
    h = hash_image_bytes(gif)
    assert h.error is None
    assert h.format == "GIF"
    assert h.pdq == hash_image_bytes(encode(first)).pdq
    assert hamming(h.pdq, hash_image_bytes(encode(second)).pdq) > 64


def test_rgba_png_hashes_its_colour_channels() -> None:
    rgb = np.asarray(photo())
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    h = hash_image_bytes(encode(rgba))
    assert h.error is None
    assert h.pdq == hash_image_bytes(encode(photo())).pdq


def test_palette_png() -> None:
    pal = photo().quantize(64)
    assert pal.mode == "P"
    h = hash_image_bytes(encode(pal))
    assert h.error is None
    assert h.pdq == hash_image_bytes(encode(pal.convert("RGB"))).pdq
    assert h.pdq_quality is not None and h.pdq_quality >= 50


def test_greyscale_png_and_jpeg() -> None:
    grey = photo().convert("L")
    h = hash_image_bytes(encode(grey))
    assert h.error is None
    assert h.pdq == hash_image_bytes(encode(grey.convert("RGB"))).pdq
    assert hamming(h.pdq, hash_image_bytes(encode(photo())).pdq) <= 31
    hj = hash_image_bytes(encode(grey, "JPEG", quality=90))
    assert hj.error is None and hj.format == "JPEG"
    assert hamming(hj.pdq, h.pdq) <= 31


def test_webp_is_hashed() -> None:
    h = hash_image_bytes(encode(photo(), "WEBP", quality=90))
    assert h.error is None and h.format == "WEBP"
    assert hamming(h.pdq, hash_image_bytes(encode(photo())).pdq) <= 31


def test_flat_grey_has_low_quality() -> None:
    h = hash_image_bytes(encode(Image.new("RGB", (64, 64), (128, 128, 128))))
    assert h.error is None
    assert h.pdq_quality is not None and h.pdq_quality < 50
    textured = hash_image_bytes(encode(photo()))
    assert textured.pdq_quality is not None and textured.pdq_quality >= 50


# --- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [MD5, SHA1, SHA256, PDQ], ids=lambda k: k.name)
def test_validate_accepts_and_normalises(kind: type) -> None:
    value = "0123456789abcdef" * (kind.hex_length // 16) + "a1b2c3d4"[: kind.hex_length % 16]
    assert len(value) == kind.hex_length
    assert kind.validate(value) == value
    assert kind.validate(f"  {value.upper()}\n") == value


@pytest.mark.parametrize("kind", [MD5, SHA1, SHA256, PDQ], ids=lambda k: k.name)
def test_validate_rejects(kind: type) -> None:
    n = kind.hex_length
    bad = [
        "",
        "a" * (n - 1),
        "a" * (n + 1),
        "g" + "a" * (n - 1),
        "0x" + "a" * (n - 2),
        "+" + "a" * (n - 1),
        "-" + "a" * (n - 1),
        "a_" * (n // 2 - 1) + "aa",
        "a" * (n // 2) + " " + "a" * (n // 2 - 1),
    ]
    for value in bad:
        with pytest.raises(ValueError):
            kind.validate(value)


def test_kinds_registry() -> None:
    assert set(KINDS) == {"md5", "sha1", "sha256", "pdq"}
    assert KINDS["pdq"] is PDQ and KINDS["md5"] is MD5


def test_pdq_distance_is_hamming() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        a = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
        b = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
        assert PDQ.distance(a, b) == hamming(a, b)
        assert PDQ.distance(a, a) == 0
    zero, ones = "0" * 64, "f" * 64
    assert PDQ.distance(zero, ones) == 256
    assert PDQ.distance(zero, "8" + "0" * 63) == 1
    assert PDQ.distance(zero, "0" * 63 + "1") == 1


def test_digest_distance() -> None:
    a, b = "a" * 32, "b" * 32
    assert MD5.distance(a, a) == 0
    assert MD5.distance(a, b) > 256


def test_bits_to_hex_is_msb_first() -> None:
    one = np.zeros(256, dtype=np.uint8)
    one[0] = 1
    assert PDQ.bits_to_hex(one) == "80" + "0" * 62
    last = np.zeros(256, dtype=np.uint8)
    last[255] = 1
    assert PDQ.bits_to_hex(last) == "0" * 63 + "1"
    rnd = np.random.default_rng(5).integers(0, 2, 256)
    expected = int("".join(str(int(b)) for b in rnd), 2)
    assert int(PDQ.bits_to_hex(rnd), 16) == expected
    assert bits(PDQ.bits_to_hex(rnd)) == int(rnd.sum())


def test_one_pass_digests_across_chunk_boundaries() -> None:
    import os

    from arachne.matcher.hashing import DIGEST_CHUNK, digests

    for size in (0, 1, DIGEST_CHUNK - 1, DIGEST_CHUNK, DIGEST_CHUNK + 1, 3 * DIGEST_CHUNK + 7):
        data = os.urandom(size)
        assert digests(data) == (
            hashlib.sha256(data).hexdigest(),
            hashlib.md5(data).hexdigest(),
            hashlib.sha1(data).hexdigest(),
        ), size
