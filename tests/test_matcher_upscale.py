"""The 2× upscaled PDQ query (``up2``): its folded weights against Pillow's own bicubic
upscale, and the downscaled-texture copies it exists to find."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from arachne.matcher.decode import decode_luma
from arachne.matcher.hashing import UPSCALE_MAX_SIDE, UPSCALED_VARIANT, hash_image_bytes
from arachne.matcher.kinds import PDQ
from arachne.matcher.pdq import axis_weights, upscaled_axis_weights, upscaled_pdq
from tests.conftest import PHOTOS


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("shape", [(1, 5), (2, 3), (37, 53), (128, 96), (301, 200), (9, 700)])
def test_folded_weights_equal_pdq_of_pillows_bicubic_upscale(shape: tuple[int, int]) -> None:
    rows, cols = shape
    pixels = np.random.default_rng(rows).uniform(0, 255, shape).astype(np.float32)
    # Oracle: Pillow upscales the float image itself, then PDQ's map at the doubled size.
    big = Image.fromarray(pixels, "F").resize((cols * 2, rows * 2), Image.Resampling.BICUBIC)
    expected = axis_weights(rows * 2) @ np.asarray(big, np.float64) @ axis_weights(cols * 2).T
    folded = upscaled_axis_weights(rows) @ pixels.astype(np.float64) @ upscaled_axis_weights(cols).T
    np.testing.assert_allclose(folded, expected, atol=0.05)


@pytest.mark.parametrize("scale", [2, 4])
def test_folded_weights_on_downscaled_pixels_spread_each_block(scale: int) -> None:
    length = 203  # not a multiple of the scale: the last block is partial
    full = upscaled_axis_weights(length).astype(np.float64)
    blocks = -(-length // scale)
    spread = np.zeros((length, blocks))  # full-resolution pixel <- its block's mean
    spread[np.arange(length), np.arange(length) // scale] = 1.0
    np.testing.assert_allclose(upscaled_axis_weights(length, scale), full @ spread, atol=1e-5)


def test_half_size_copy_of_fine_texture_matches_only_through_up2() -> None:
    original = (PHOTOS / "skimage_brick.png").read_bytes()
    listed = hash_image_bytes(original).pdq  # the list holds the reference hash
    assert listed is not None
    with Image.open(io.BytesIO(original)) as img:
        half = img.convert("RGB").resize((img.width // 2, img.height // 2), Image.LANCZOS)
    copy = hash_image_bytes(jpeg(half), reference=False)
    plain = min(PDQ.distance(listed, v) for v in copy.pdq_variants)
    assert plain > 31  # the texture's alias is gone from the copy's own hash
    queries = dict(copy.pdq_queries())
    assert copy.pdq_upscaled == queries[UPSCALED_VARIANT]
    assert PDQ.distance(listed, queries[UPSCALED_VARIANT]) <= 16


def test_up2_is_computed_for_small_images_only() -> None:
    with Image.open(PHOTOS / "skimage_chelsea.png") as img:
        small = jpeg(img.convert("RGB"))
        large = jpeg(img.convert("RGB").resize((UPSCALE_MAX_SIDE + 1, 700)))
    assert hash_image_bytes(small, reference=False).pdq_upscaled is not None
    assert hash_image_bytes(large, reference=False).pdq_upscaled is None
    assert hash_image_bytes(small, reference=False, upscale=False).pdq_upscaled is None
    assert hash_image_bytes(small).pdq_upscaled is None  # the reference path never has it
    labels = [label for label, _ in hash_image_bytes(small, reference=False).pdq_queries()]
    assert labels.count(UPSCALED_VARIANT) == 1


def test_up2_is_left_out_with_its_image_below_min_quality() -> None:
    flat = Image.new("RGB", (200, 150), (120, 120, 120))
    h = hash_image_bytes(jpeg(flat), reference=False)
    assert h.pdq_upscaled is not None and (h.pdq_quality or 0) < 50
    assert h.pdq_queries(min_quality=50) == []


def test_up2_of_a_luma_equals_the_full_resolution_path() -> None:
    # A JPEG big enough to be DCT-downscaled: the folded weights stand in for the blocks.
    with Image.open(PHOTOS / "skimage_coffee.png") as img:
        data = jpeg(img.convert("RGB").resize((1000, 700)))
    luma = decode_luma(data, 10**9)
    assert luma.scale > 1
    with Image.open(io.BytesIO(data)) as img:
        grey = np.asarray(img.convert("L"))
    full = type(luma)(grey, 1, luma.width, luma.height, luma.format)
    assert PDQ.distance(upscaled_pdq(luma), upscaled_pdq(full)) <= 10
