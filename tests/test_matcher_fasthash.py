"""The fast hashing path (luma decode, DCT-domain downscale, PDQ's downsampling as a linear
map, true dihedral variants, border trimming) against the reference path and the C++."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageFile, ImageOps

from arachne.matcher.decode import Luma, choose_scale, decode_luma
from arachne.matcher.hashing import TRIM_PREFIX, ImageHashes, hash_image_bytes
from arachne.matcher.kinds import PDQ
from arachne.matcher.pdq import axis_weights, dihedral_buffers, hashes_from_buffers, pdq_quality
from arachne.matcher.trim import MAX_TRIM_FRACTION, find_trim_box, trim_borders
from tests.conftest import png_chunk

PHOTOS = Path("/work/shared/data/photos")
BIG = Path("/work/shared/data/pdq-vectors/repo/pdq/data/reg-test-input/exif-rotn/exif-rotn-1.jpg")


def encode(img: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def hamming(a: str | None, b: str | None) -> int:
    assert a is not None and b is not None
    return (int(a, 16) ^ int(b, 16)).bit_count()


@cache
def photo(name: str, size: int | None = None) -> Image.Image:
    with Image.open(PHOTOS / name) as img:
        rgb = img.convert("RGB")
    if size:
        rgb.thumbnail((size, size))
    return rgb


def old_path(data: bytes) -> tuple[tuple[str, ...], int]:
    """hash_image_bytes before the fast path existed: Pillow RGB + pdqhash, no resize."""
    with Image.open(io.BytesIO(data)) as img:
        variants, quality = pdqhash.compute_dihedral(np.asarray(img.convert("RGB")))
    return tuple(PDQ.bits_to_hex(v) for v in variants), int(quality)


# --- the reference switch ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["skimage_coffee.png", "sklearn_china.jpg", "skimage_moon.png"])
def test_reference_true_is_the_old_path(name: str) -> None:
    data = (PHOTOS / name).read_bytes()
    h = hash_image_bytes(data, reference=True)
    assert (h.pdq_variants, h.pdq_quality) == old_path(data)
    assert h.pdq == h.pdq_variants[0]
    assert h.pdq_trimmed_variants == () and h.trim_box is None
    assert hash_image_bytes(data) == h  # the default stays the reference path


# --- fast vs reference -------------------------------------------------------------------------


def web_copies() -> list[object]:
    """(bytes, expected decode scale): every downscale factor; JPEG, PNG, WebP, CMYK."""
    garden = photo("mate_Garden.jpg")
    return [
        pytest.param(encode(photo("skimage_chelsea.png"), "JPEG"), 1, id="jpeg-451px-s1"),
        pytest.param((PHOTOS / "sklearn_china.jpg").read_bytes(), 1, id="jpeg-640px-s1"),
        pytest.param((PHOTOS / "imgaug_quokka.jpg").read_bytes(), 2, id="jpeg-960px-s2"),
        pytest.param((PHOTOS / "mate_Garden.jpg").read_bytes(), 4, id="jpeg-2560px-s4"),
        pytest.param(BIG.read_bytes(), 8, id="jpeg-4032px-s8"),
        pytest.param((PHOTOS / "skimage_text.png").read_bytes(), 1, id="png-text-s1"),
        pytest.param((PHOTOS / "skimage_brick.png").read_bytes(), 1, id="png-texture-s1"),
        pytest.param(encode(photo("skimage_brick.png").resize((800, 800))), 2, id="png-800-s2"),
        pytest.param(encode(garden.resize((1603, 1001))), 4, id="png-1603px-s4"),
        pytest.param(encode(garden.resize((1603, 1001)), "WEBP", quality=80), 4, id="webp-s4"),
        pytest.param(encode(garden.resize((1000, 700)), "WEBP", quality=80), 2, id="webp-s2"),
        pytest.param(encode(garden.convert("CMYK"), "JPEG"), 4, id="cmyk-jpeg-s4"),
    ]


@pytest.mark.parametrize(("data", "scale"), web_copies())
def test_fast_path_within_10_bits_of_reference(data: bytes, scale: int) -> None:
    ref = hash_image_bytes(data)
    fast = hash_image_bytes(data, reference=False)
    assert fast.error is None, fast.error_detail
    assert decode_luma(data, 10**9).scale == scale
    assert (fast.sha256, fast.md5, fast.sha1, fast.size) == (
        ref.sha256,
        ref.md5,
        ref.sha1,
        ref.size,
    )
    assert (fast.width, fast.height, fast.format) == (ref.width, ref.height, ref.format)
    assert hamming(fast.pdq, ref.pdq) <= 10
    assert abs((fast.pdq_quality or 0) - (ref.pdq_quality or 0)) <= 5
    assert len(fast.pdq_variants) == 8 and fast.pdq_variants[0] == fast.pdq
    assert hash_image_bytes(data, reference=False) == fast  # deterministic


def test_choose_scale_keeps_two_scaled_and_six_full_pixels_per_box() -> None:
    # PDQ's box is ceil(short side / 128) full-resolution pixels.
    assert choose_scale(10_000, 640) == 1  # box 5: under 6 full-resolution pixels
    assert choose_scale(10_000, 641) == 2  # box 6 = 3 scaled pixels at 2
    assert choose_scale(10_000, 896) == 2  # box 7
    assert choose_scale(10_000, 897) == 4  # box 8 = 2 scaled pixels at 4
    assert choose_scale(10_000, 1920) == 4  # box 15
    assert choose_scale(10_000, 1921) == 8  # box 16 = 2 scaled pixels at 8
    assert choose_scale(2944, 1900) == 4  # the short side counts
    assert choose_scale(50_000, 40_000) == 8
    assert choose_scale(1, 1) == 1
    assert choose_scale(10_000, 640, min_window=3) == 1  # box 5 < 2 x 3
    assert choose_scale(10_000, 641, min_window=3) == 2  # box 6


@pytest.mark.parametrize("size", [(1001, 999), (2049, 1537), (4001, 3075)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decoded_blocks_line_up_with_full_resolution(size: tuple[int, int], fmt: str) -> None:
    img = photo("skimage_astronaut.png").resize(size)
    luma = decode_luma(encode(img, fmt, **({"compress_level": 1} if fmt == "PNG" else {})), 10**9)
    s = luma.scale
    assert s == choose_scale(*size) > 1
    assert (luma.width, luma.height) == size
    assert luma.pixels.shape == (-(-size[1] // s), -(-size[0] // s))  # partial last block
    # Each pixel averages its s x s block: compare with an exact box mean of the full image.
    full = np.asarray(img.convert("L"), dtype=np.float64)
    pad = np.pad(
        full,
        ((0, luma.pixels.shape[0] * s - size[1]), (0, luma.pixels.shape[1] * s - size[0])),
        mode="edge",
    )
    blocks = pad.reshape(luma.pixels.shape[0], s, luma.pixels.shape[1], s).mean(axis=(1, 3))
    inner = (slice(0, -1), slice(0, -1))  # the partial edge blocks differ by edge handling
    assert np.abs(blocks[inner] - luma.pixels[inner]).mean() < 3.0


# --- PDQ's downsampling as a linear map --------------------------------------------------------


def box_cpp(x: np.ndarray, window: int) -> np.ndarray:
    """A line-by-line port of the C++ box1DFloat, applied down axis 0 of ``x``."""
    n = len(x)
    half = (window + 2) // 2
    out = np.zeros_like(x)
    total = np.zeros(x.shape[1:])
    size, li, ri, oi = 0, 0, 0, 0
    for _ in range(half - 1):
        total, size, ri = total + x[ri], size + 1, ri + 1
    for _ in range(window - half + 1):
        total, size = total + x[ri], size + 1
        out[oi] = total / size
        ri, oi = ri + 1, oi + 1
    for _ in range(n - window):
        total = total + x[ri] - x[li]
        out[oi] = total / size
        li, ri, oi = li + 1, ri + 1, oi + 1
    for _ in range(half - 1):
        total, size = total - x[li], size - 1
        out[oi] = total / size
        li, oi = li + 1, oi + 1
    return out


@pytest.mark.parametrize("length", [5, 63, 64, 128, 129, 300, 1004])
def test_axis_weights_equal_two_box_passes_then_decimation(length: int) -> None:
    window = (length + 127) // 128
    blurred = box_cpp(box_cpp(np.eye(length), window), window)  # column f: response to e_f
    centres = [int((i + 0.5) * length / 64) for i in range(64)]
    expected = blurred[centres]
    weights = axis_weights(length)
    assert weights.shape == (64, length)
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    for scale in (2, 4, 8):  # folded: each coarse pixel gets its block's summed weight
        n = -(-length // scale)
        folded = np.pad(expected, ((0, 0), (0, n * scale - length)))
        folded = folded.reshape(64, n, scale).sum(axis=2)
        np.testing.assert_allclose(axis_weights(length, scale), folded, atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dct_median_bits_and_quality_equal_pdqhash_at_64x64(seed: int) -> None:
    # At 64x64 PDQ's window is 1 and decimation keeps every pixel: only the hashing remains.
    rng = np.random.default_rng(seed)
    grey = np.asarray(
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).resize((64, 64))
    )
    variants, quality = pdqhash.compute_dihedral(np.repeat(grey[:, :, None], 3, axis=2))
    eye = axis_weights(64)
    np.testing.assert_array_equal(eye, np.eye(64, dtype=np.float32))
    buffers = dihedral_buffers(grey.astype(np.float32), eye, eye)
    assert hashes_from_buffers(buffers) == tuple(PDQ.bits_to_hex(v) for v in variants)
    assert pdq_quality(buffers[0]) == quality


def test_fast_variants_are_hashes_of_the_transformed_image() -> None:
    """pdqhash derives variants from the DCT by sign flips, which assumes a symmetric
    sampling grid; on a fine texture that is far off the hash of the rotated file."""
    brick = photo("skimage_brick.png")
    t = Image.Transpose
    transforms = [None, t.ROTATE_90, t.ROTATE_180, t.ROTATE_270, t.FLIP_TOP_BOTTOM]
    transforms += [t.FLIP_LEFT_RIGHT, t.TRANSPOSE, t.TRANSVERSE]  # PDQ.VARIANTS order
    fast = hash_image_bytes(encode(brick), reference=False)
    ref = hash_image_bytes(encode(brick))
    shortcut_errors = []
    for k, op in enumerate(transforms):
        truth = hash_image_bytes(encode(brick if op is None else brick.transpose(op))).pdq
        assert hamming(fast.pdq_variants[k], truth) <= 2, PDQ.VARIANTS[k]
        shortcut_errors.append(hamming(ref.pdq_variants[k], truth))
    assert max(shortcut_errors) > 31


# --- guarded decoding --------------------------------------------------------------------------


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + png_chunk(b"IEND", b"")
    )


def broken_inputs() -> list[object]:
    jpeg = encode(photo("mate_Garden.jpg"), "JPEG", quality=85)
    webp = encode(photo("sklearn_flower.jpg"), "WEBP", quality=80)
    png = encode(photo("sklearn_flower.jpg"))
    return [
        pytest.param(jpeg[: len(jpeg) // 2], "truncated", id="truncated-jpeg"),
        pytest.param(png[: len(png) // 2], "truncated", id="truncated-png"),
        pytest.param(webp[: len(webp) // 2], None, id="truncated-webp"),
        pytest.param(b"", "not_an_image", id="empty"),
        pytest.param(b"<html><body>no</body></html>", "not_an_image", id="html"),
        pytest.param(bomb_png(), "decompression_bomb", id="bomb"),
        pytest.param(jpeg[:200], None, id="jpeg-header-only"),
    ]


@pytest.mark.parametrize(("data", "reason"), broken_inputs())
def test_both_paths_turn_bad_bytes_into_the_same_error(data: bytes, reason: str | None) -> None:
    ref = hash_image_bytes(data)
    fast = hash_image_bytes(data, reference=False)
    assert fast.error is not None and fast.error == ref.error
    if reason:
        assert fast.error == reason
    assert fast.pdq is None and fast.pdq_variants == () and fast.pdq_trimmed_variants == ()
    assert fast.sha256 == hashlib.sha256(data).hexdigest()
    assert fast.md5 == hashlib.md5(data).hexdigest() and fast.size == len(data)


def test_bomb_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    drafts: list[object] = []
    original_load, original_draft = ImageFile.ImageFile.load, Image.Image.draft

    def load(self: ImageFile.ImageFile) -> object:
        loads.append(self)
        return original_load(self)

    def draft(self: Image.Image, *args: object) -> object:
        drafts.append(self)
        return original_draft(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(Image.Image, "draft", draft)
    small = encode(photo("sklearn_flower.jpg", 256), "JPEG")
    assert hash_image_bytes(small, reference=False).error is None
    assert loads  # the recorder sees a normal decode
    loads.clear()
    huge = encode(Image.new("L", (400, 300)), "JPEG")
    h = hash_image_bytes(huge, reference=False, max_pixels=400 * 300 - 1)
    assert h.error == "decompression_bomb" and "400x300" in (h.error_detail or "")
    assert loads == []
    assert hash_image_bytes(bomb_png(), reference=False).error == "decompression_bomb"
    assert loads == []


def test_byte_cap() -> None:
    data = encode(photo("sklearn_flower.jpg", 128), "JPEG")
    for reference in (True, False):
        assert hash_image_bytes(data, max_bytes=len(data), reference=reference).error is None
        h = hash_image_bytes(data, max_bytes=len(data) - 1, reference=reference)
        assert h.error == "too_large" and h.pdq is None
        assert h.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (3, 2), (5, 5), (64, 7)])
def test_tiny_images_do_not_crash(size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, (10, 200, 30)))
    h = hash_image_bytes(data, reference=False)
    assert (h.width, h.height) == size
    assert h.error is None and h.pdq is not None and len(h.pdq_variants) == 8
    assert h.pdq_quality is not None and h.pdq_quality < 50


# --- decode details ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGBX", "P"])
def test_direct_conversion_to_l_equals_going_through_rgb(mode: str) -> None:
    rgb = photo("skimage_coffee.png", 200)
    img = rgb.quantize(64) if mode == "P" else rgb.convert(mode)
    if mode == "RGBA":
        alpha = np.random.default_rng(4).integers(0, 256, rgb.size[::-1], dtype=np.uint8)
        img.putalpha(Image.fromarray(alpha))
    direct = np.asarray(img.convert("L"))
    assert np.array_equal(direct, np.asarray(img.convert("RGB").convert("L")))


@pytest.mark.parametrize(
    "params",
    [{"quality": 80}, {"lossless": True}, {"quality": 80, "alpha": True}, {"animated": True}],
    ids=["lossy", "lossless", "alpha", "animated"],
)
def test_webp_shortcut_decodes_like_pillow(params: dict[str, object]) -> None:
    img = photo("skimage_chelsea.png")
    params = dict(params)
    if params.pop("alpha", False):
        img = img.convert("RGBA")
        img.putalpha(128)
    if params.pop("animated", False):
        params |= {"save_all": True, "append_images": [img.rotate(90)], "quality": 80}
    animated = "save_all" in params
    data = encode(img, "WEBP", **params)
    with Image.open(io.BytesIO(data)) as pil:
        expected = np.asarray(pil.convert("L"))
    pixels = decode_luma(data, 10**9).pixels
    if animated:  # libwebp's still decoder refuses animations: Pillow's first frame, exactly
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, expected)
        return
    # Still images: libwebp's Y plane mapped to full range, against Pillow's RGB -> L (which
    # adds chroma upsampling and per-channel rounding and clipping) ...
    from arachne.matcher import webp_luma

    assert webp_luma.BYPASS_FILTERING  # the package's struct layout is the documented one
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(webp_luma, "BYPASS_FILTERING", False)
        unfiltered = decode_luma(data, 10**9).pixels
    assert unfiltered.dtype == np.float32 and unfiltered.shape == expected.shape
    diff = np.abs(unfiltered - expected)
    assert diff.mean() < 0.5 and diff.max() < 4, (diff.mean(), diff.max())
    # ... and without VP8's deblocking filter (the default): block edges differ a little,
    # PDQ's blur does not see it.
    diff = np.abs(pixels - expected)
    assert 0 < diff.mean() < 1.0, diff.mean()
    assert hamming(hash_image_bytes(data, reference=False).pdq, hash_image_bytes(data).pdq) <= 4


def test_webp_without_the_webp_package_decodes_with_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arachne.matcher import webp_luma

    data = encode(photo("skimage_chelsea.png"), "WEBP", quality=80)
    assert decode_luma(data, 10**9).pixels.dtype == np.float32  # the Y-plane path by default
    monkeypatch.setattr(webp_luma, "lib", None)
    with Image.open(io.BytesIO(data)) as pil:
        expected = np.asarray(pil.convert("L"))
    assert np.array_equal(decode_luma(data, 10**9).pixels, expected)


# --- border trimming ---------------------------------------------------------------------------


def padded(img: Image.Image, fraction: float, colour: str) -> tuple[Image.Image, tuple]:
    bx, by = round(img.width * fraction), round(img.height * fraction)
    return (
        ImageOps.expand(img, border=(bx, by, bx, by), fill=colour),
        (bx, by, bx + img.width, by + img.height),
    )


def close_box(found: tuple | None, truth: tuple, size: tuple[int, int], slack: float) -> bool:
    assert found is not None
    limits = (size[0], size[1]) * 2
    return all(abs(f - t) <= slack * lim for f, t, lim in zip(found, truth, limits, strict=True))


@pytest.mark.parametrize("colour", ["white", "black"])
@pytest.mark.parametrize("fraction", [0.03, 0.1])
def test_padding_is_trimmed_back_to_the_picture(colour: str, fraction: float) -> None:
    img = photo("skimage_astronaut.png")
    pad, truth = padded(img, fraction, colour)
    decoded = Image.open(io.BytesIO(encode(pad, "JPEG", quality=75))).convert("RGB")
    for given in (decoded, np.asarray(decoded), decoded.convert("L")):
        cut = trim_borders(given)
        assert cut is not None
        assert type(cut) is type(given)
    box = find_trim_box(np.asarray(decoded.convert("L")))
    assert close_box(box, truth, pad.size, 0.01)


def test_noisy_jpeg_border_is_still_a_border() -> None:
    img = photo("sklearn_china.jpg")
    pad, truth = padded(img, 0.08, "white")
    arr = np.asarray(pad, dtype=np.float32)
    noise = np.random.default_rng(9).normal(0, 3, arr.shape[:2])[..., None]
    noisy = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    decoded = Image.open(io.BytesIO(encode(noisy, "JPEG", quality=40))).convert("L")
    assert close_box(find_trim_box(np.asarray(decoded)), truth, pad.size, 0.01)


def test_nothing_to_trim() -> None:
    assert trim_borders(photo("skimage_astronaut.png")) is None
    assert trim_borders(Image.new("RGB", (300, 200), "white")) is None  # all flat: content
    assert trim_borders(np.zeros((5, 5), np.uint8)) is None
    one_pixel = ImageOps.expand(photo("skimage_astronaut.png"), border=1, fill="white")
    assert trim_borders(one_pixel) is None  # under 1%: not worth 8 more hashes


def test_a_drifting_gradient_is_not_padding() -> None:
    """Sky-like edges: flat across, slowly changing down. Padding does not drift."""
    img = np.asarray(photo("skimage_astronaut.png").convert("L")).copy()
    img[:100] = (np.linspace(200, 120, 100)[:, None]).astype(np.uint8)
    box = find_trim_box(img)
    assert box is None or box[1] <= 4


def test_long_flat_runs_are_kept_and_other_sides_still_trimmed() -> None:
    img = photo("skimage_astronaut.png")
    wide = ImageOps.expand(img, border=(200, 20, 20, 20), fill="black")  # left: 27%
    box = find_trim_box(np.asarray(wide.convert("L")))
    assert box is not None
    assert box[0] == 0  # over MAX_TRIM_FRACTION: more likely a backdrop than padding
    assert box[0] / wide.width < MAX_TRIM_FRACTION
    assert abs(box[1] - 20) <= 2 and abs(box[3] - (wide.height - 20)) <= 2


def test_caption_bar_between_side_borders_is_found_in_the_second_round() -> None:
    img = photo("skimage_astronaut.png")
    canvas = Image.new("RGB", (img.width + 80, img.height + 60), "white")
    canvas.paste(img, (40, 0))
    canvas.paste(Image.new("RGB", (img.width, 60), (20, 20, 120)), (40, img.height))
    box = find_trim_box(np.asarray(canvas.convert("L")))
    assert box == (40, 0, 40 + img.width, img.height)


# --- trimmed variants through hash_image_bytes ---------------------------------------------------


def test_padded_copy_matches_through_trimmed_variants() -> None:
    img = photo("mate_Garden.jpg")  # 2560x1600: decoded at scale 4
    listed = hash_image_bytes(encode(img, "JPEG", quality=90))
    pad, truth = padded(img, 0.1, "white")
    h = hash_image_bytes(encode(pad, "JPEG", quality=80), reference=False)
    assert h.error is None
    assert hamming(h.pdq, listed.pdq) > 31
    assert h.trim_box is not None and close_box(h.trim_box, truth, pad.size, 0.005)
    assert len(h.pdq_trimmed_variants) == 8
    assert hamming(h.pdq_trimmed_variants[0], listed.pdq) <= 16
    assert (h.pdq_trimmed_quality or 0) >= 50

    queries = h.pdq_queries(min_quality=50)
    labels = [label for label, _ in queries]
    assert labels == [*PDQ.VARIANTS, *(TRIM_PREFIX + v for v in PDQ.VARIANTS)]
    assert max(len(label) for label in labels) <= 16  # the matches.variant column
    assert [v for _, v in queries] == [*h.pdq_variants, *h.pdq_trimmed_variants]
    assert h.pdq_queries(min_quality=101) == []
    assert (
        hash_image_bytes(encode(pad, "JPEG"), reference=False, trim=False).pdq_trimmed_variants
        == ()
    )


def test_queries_leave_out_a_low_quality_set() -> None:
    h = ImageHashes(
        sha256="0" * 64,
        md5="0" * 32,
        sha1="0" * 40,
        size=1,
        pdq="a" * 64,
        pdq_quality=20,
        pdq_variants=("a" * 64,) * 8,
        pdq_trimmed_variants=("b" * 64,) * 8,
        pdq_trimmed_quality=90,
    )
    assert [label for label, _ in h.pdq_queries(50)] == [TRIM_PREFIX + v for v in PDQ.VARIANTS]
    assert len(h.pdq_queries()) == 16


# --- the fast PNG decoder (matcher/png.py) in the hashing path --------------------------------


def png_variants() -> list[object]:
    rgb = photo("skimage_coffee.png", 300)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.random.default_rng(5).integers(0, 256, rgb.size[::-1], "u1")))
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    anim = encode(rgb, "PNG", save_all=True, append_images=[rgb.rotate(90)])
    fast, pillow = True, False  # which decoder the fast path is expected to use
    return [
        pytest.param(encode(rgb), fast, id="rgb"),
        pytest.param(encode(rgb.convert("L")), fast, id="grey"),
        pytest.param(encode(rgba), fast, id="rgba"),
        pytest.param(encode(rgb.convert("LA")), fast, id="grey-alpha"),
        pytest.param(encode(rgb.quantize(64)), fast, id="palette"),
        pytest.param(encode(grey16), pillow, id="grey16"),
        pytest.param(encode(rgb.convert("1")), pillow, id="1-bit"),
        pytest.param(encode(rgb, "PNG", transparency=(0, 0, 0)), fast, id="rgb-trns"),
        pytest.param(anim, pillow, id="apng"),
    ]


@pytest.mark.parametrize(("data", "by_fast_decoder"), png_variants())
def test_png_decodes_like_pillow(
    data: bytes, by_fast_decoder: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arachne.matcher import decode

    luma = decode_luma(data, 10**9)
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(img.convert("L"))
    if by_fast_decoder:  # float block means; Pillow's L is the same rounded to uint8
        assert luma.pixels.dtype == np.float32 and luma.scale == 1
        assert np.abs(luma.pixels - expected).max() <= 0.5 + 1e-3
    else:
        assert np.array_equal(luma.pixels, expected)
    monkeypatch.setattr(decode, "_png_failed", True)  # the Pillow path, for every file
    assert np.array_equal(decode_luma(data, 10**9).pixels, expected)


def test_fast_png_hashes_like_reference_at_a_reduced_scale() -> None:
    img = photo("skimage_chelsea.png")
    data = encode(img.resize((img.width * 4, img.height * 4)), "PNG", compress_level=3)
    luma = decode_luma(data, 10**9)
    assert luma.scale > 1 and luma.pixels.dtype == np.float32
    fast, ref = hash_image_bytes(data, reference=False), hash_image_bytes(data)
    assert hamming(fast.pdq, ref.pdq) <= 4


def test_fast_png_failure_is_logged_once_then_pillow_decodes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from arachne.matcher import decode, png

    calls: list[int] = []

    def broken(data: bytes, scale: int) -> np.ndarray:
        calls.append(scale)
        raise RuntimeError("kernel did not compile")

    data = encode(photo("sklearn_flower.jpg", 300))
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(img.convert("L"))
    monkeypatch.setattr(png, "png_luma", broken)
    monkeypatch.setattr(decode, "_png_failed", False)
    for _ in range(3):
        assert np.array_equal(decode_luma(data, 10**9).pixels, expected)
    assert calls == [1] and caplog.text.count("fast PNG decoder failed") == 1
    truncated = hash_image_bytes(data[: len(data) // 2], reference=False)
    assert truncated.error == "truncated"


def test_truncated_png_gets_pillows_reason_through_the_fast_path() -> None:
    data = encode(photo("sklearn_flower.jpg", 300))
    assert hash_image_bytes(data[: len(data) // 2], reference=False).error == "truncated"
    assert hash_image_bytes(data[: len(data) // 2]).error == "truncated"


def test_fast_png_never_sees_a_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    from arachne.matcher import png

    calls: list[int] = []

    def recorder(data: bytes, scale: int) -> np.ndarray:
        calls.append(len(data))
        raise RuntimeError("not expected")

    monkeypatch.setattr(png, "png_luma", recorder)
    assert hash_image_bytes(bomb_png(), reference=False).error == "decompression_bomb"
    big = encode(Image.new("RGB", (400, 300)))
    assert hash_image_bytes(big, reference=False, max_pixels=400 * 300 - 1).error == (
        "decompression_bomb"
    )
    assert calls == []


@pytest.mark.parametrize(
    ("shape", "scale", "box"),
    [
        ((1, 1), 1, None),
        ((37, 53), 1, None),
        ((37, 53), 1, (3, 2, 30, 25)),
        ((301, 200), 2, None),
        ((301, 200), 2, (3, 2, 190, 250)),
    ],
)
def test_sparse_passes_equal_the_dense_maps(
    shape: tuple[int, int], scale: int, box: tuple[int, int, int, int] | None
) -> None:
    """pdq_from_luma reads each output's own pixels (row pass, then column pass); the dense
    product of the full weight matrices is the oracle."""
    from arachne.matcher import pdq

    rows, cols = shape
    pixels = np.random.default_rng(rows).uniform(0, 255, shape).astype(np.float32)
    full_h, full_w = rows * scale - (scale > 1), cols * scale - (scale > 1)  # partial blocks
    left, top, right, bottom = box or (0, 0, cols, rows)
    crop = pixels[top:bottom, left:right]
    ch = min(bottom * scale, full_h) - top * scale
    cw = min(right * scale, full_w) - left * scale
    sparse = pdq._variants(
        pdq._column_pass(
            pdq._row_pass(crop, *pdq.local_axis_weights(ch, scale)),
            *pdq.local_axis_weights(cw, scale),
        )
    )
    dense = dihedral_buffers(crop, axis_weights(ch, scale), axis_weights(cw, scale))
    np.testing.assert_allclose(sparse, dense, atol=1e-3)
    luma = Luma(pixels, scale, full_w, full_h, "PNG")
    assert pdq.pdq_from_luma(luma, box)[0] == hashes_from_buffers(dense)
