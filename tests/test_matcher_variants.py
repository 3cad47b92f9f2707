"""Packed PDQ queries (issue 9 §2): every query the live path makes, back from a few
hundred bytes, so a list imported later matches without fetching the image again."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from arachne.matcher.hashing import hash_image_bytes
from arachne.matcher.index import hex_to_words
from arachne.matcher.variants import LABELS, pack, unpack, unpack_many
from tests.imageserver import make_image


def framed(seed: int) -> bytes:
    """A picture inside a wide uniform border: its hashes include a trimmed set."""
    inner = Image.open(io.BytesIO(make_image(seed, size=(200, 150))))
    out = io.BytesIO()
    ImageOps.expand(inner, border=60, fill=(255, 255, 255)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("data", [make_image(3), make_image(4, size=(1400, 1100)), framed(5)])
def test_every_live_query_comes_back(data: bytes) -> None:
    hashes = hash_image_bytes(data, reference=False)
    blob = pack(hashes)
    assert blob is not None
    stored = unpack(blob)
    expected = hashes.pdq_queries()
    assert list(stored.labels) == [label for label, _ in expected]
    assert np.array_equal(stored.words, hex_to_words([h for _, h in expected]))
    assert len(blob) == 4 + 32 * len(expected)  # raw bytes, not hex text
    # The quality gate gives the same queries as the live path at any threshold.
    for min_quality in (0, 50, 101):
        live = [label for label, _ in hashes.pdq_queries(min_quality)]
        kept = [
            lb for lb, keep in zip(stored.labels, stored.usable(min_quality), strict=True) if keep
        ]
        assert kept == live


def test_sizes_and_groups() -> None:
    small = hash_image_bytes(make_image(3), reference=False)
    large = hash_image_bytes(make_image(4, size=(1400, 1100)), reference=False)
    with_border = hash_image_bytes(framed(5), reference=False)
    assert small.pdq_upscaled and not small.pdq_trimmed_variants
    assert len(pack(small) or b"") == 292  # 8 dihedral + up2
    assert large.pdq_upscaled is None and len(pack(large) or b"") == 260
    assert with_border.pdq_trimmed_variants and len(pack(with_border) or b"") == 548


def test_many_at_once_and_bad_blobs() -> None:
    blobs = [pack(hash_image_bytes(make_image(s), reference=False)) for s in (6, 7)]
    blobs.append(pack(hash_image_bytes(framed(8), reference=False)))  # another layout
    rows, words, labels = unpack_many([b for b in blobs if b], min_quality=0)
    assert sorted(rows.tolist()) == [0] * 9 + [1] * 9 + [2] * 17
    for row, blob in enumerate(blobs):
        one = unpack(blob or b"")
        mine = sorted(
            (int(lb), tuple(w)) for r, lb, w in zip(rows, labels, words, strict=True) if r == row
        )
        assert mine == [
            (LABELS.index(lb), tuple(w)) for lb, w in zip(one.labels, one.words, strict=True)
        ]
    # The quality gate applies per group, as for one image.
    strict_rows, _, _ = unpack_many([b for b in blobs if b], min_quality=101)
    assert len(strict_rows) == 0
    assert pack(hash_image_bytes(b"not an image", reference=False)) is None
    for bad in (b"", b"\x02\x01\x00\x00", (blobs[0] or b"")[:-1]):
        with pytest.raises(ValueError):
            unpack(bad)
