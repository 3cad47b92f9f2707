"""PDQ and exact indexes against brute force, and the Matcher's decisions."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.matcher.index import ExactIndex, LinearPDQIndex, hex_to_words
from arachne.matcher.kinds import PDQ
from arachne.matcher.match import MatchDecision, Matcher

PHOTOS = Path("/work/shared/data/photos")
DIH = Path("/work/shared/data/pdq-vectors/repo/pdq/data/reg-test-input/dih")


def random_hashes(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return [row.tobytes().hex() for row in raw]


def flip_bits(rng: np.random.Generator, value: str, k: int) -> str:
    """``value`` with exactly k distinct bits flipped."""
    n = int(value, 16)
    for bit in rng.choice(256, size=k, replace=False):
        n ^= 1 << int(bit)
    return f"{n:064x}"


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def brute_force(ids: list[int], stored: list[str], q: str, max_distance: int) -> set:
    return {
        (i, hamming(h, q))
        for i, h in zip(ids, stored, strict=True)
        if hamming(h, q) <= max_distance
    }


# --- LinearPDQIndex ----------------------------------------------------------------------------


def test_hex_to_words_big_endian() -> None:
    words = hex_to_words(["0" * 15 + "1" + "f" * 16 + "8" + "0" * 31])
    assert words.shape == (1, 4)
    assert words.dtype == np.uint64
    assert [int(w) for w in words[0]] == [1, 2**64 - 1, 2**63, 0]
    assert hex_to_words([]).shape == (0, 4)


def test_linear_index_matches_brute_force() -> None:
    rng = np.random.default_rng(2024)
    stored = random_hashes(rng, 3000)
    ids = list(range(100, 3100))
    queries = random_hashes(rng, 8)
    # Plant neighbours of the first queries at chosen distances, around the threshold.
    planted: dict[int, tuple[int, int]] = {}  # id → (query index, distance)
    next_id = 10_000
    for qi, q in enumerate(queries[:4]):
        for k in (0, 1, 12, 30, 31, 32, 33, 64):
            stored.append(flip_bits(rng, q, k))
            ids.append(next_id)
            planted[next_id] = (qi, k)
            next_id += 1
    # Some queries are stored hashes, slightly perturbed.
    queries += [flip_bits(rng, stored[5], 3), stored[17]]
    index = LinearPDQIndex()
    index.add(ids[:1000], stored[:1000])
    index.add(ids[1000:], stored[1000:])
    assert len(index) == len(stored)
    for max_distance in (0, 31, 40):
        results = index.query(queries, max_distance)
        assert len(results) == len(queries)
        for q, hits in zip(queries, results, strict=True):
            assert len(hits) == len({i for i, _ in hits})
            assert set(hits) == brute_force(ids, stored, q, max_distance)
    # The planted neighbours at 31 are found at max_distance=31, those at 32 are not.
    results = index.query(queries[:4], 31)
    for qi, hits in enumerate(results):
        found = {i: d for i, d in hits}
        for entry_id, (pqi, k) in planted.items():
            if pqi != qi:
                continue
            if k <= 31:
                assert found.get(entry_id) == k
            else:
                assert entry_id not in found


def test_threshold_boundary_exactly() -> None:
    rng = np.random.default_rng(7)
    q = random_hashes(rng, 1)[0]
    index = LinearPDQIndex()
    index.add([30, 31, 32], [flip_bits(rng, q, 30), flip_bits(rng, q, 31), flip_bits(rng, q, 32)])
    assert sorted(index.query([q], 31)[0]) == [(30, 30), (31, 31)]
    assert sorted(index.query([q], 32)[0]) == [(30, 30), (31, 31), (32, 32)]
    assert index.query([q], 29)[0] == []


def test_add_remove() -> None:
    rng = np.random.default_rng(3)
    hashes = random_hashes(rng, 5)
    index = LinearPDQIndex()
    assert index.query(hashes[:2], 31) == [[], []]
    index.add([1, 2, 3, 4, 5], hashes)
    assert index.query([hashes[2]], 0) == [[(3, 0)]]
    index.remove([3, 99])
    assert len(index) == 4
    assert index.query([hashes[2]], 0) == [[]]
    assert index.query([hashes[3]], 0) == [[(4, 0)]]
    index.remove(i for i in (1, 2))  # any iterable
    assert len(index) == 2
    assert index.query(hashes, 0) == [[], [], [], [(4, 0)], [(5, 0)]]
    index.add([3], [hashes[2]])
    assert index.query([hashes[2]], 0) == [[(3, 0)]]
    index.remove([])
    assert len(index) == 3


def test_add_length_mismatch() -> None:
    index = LinearPDQIndex()
    with pytest.raises(ValueError):
        index.add([1, 2], ["0" * 64])
    assert len(index) == 0


def test_same_hash_under_several_ids() -> None:
    index = LinearPDQIndex()
    h = "ab" * 32
    index.add([1, 2], [h, h.upper()])
    assert sorted(index.query([h], 0)[0]) == [(1, 0), (2, 0)]


# --- ExactIndex --------------------------------------------------------------------------------


def test_exact_index() -> None:
    index = ExactIndex()
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert index.lookup("md5", md5) == []
    index.add(1, "md5", md5)
    index.add(2, "md5", md5)
    index.add(3, "sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    assert index.lookup("md5", md5) == [1, 2]
    assert index.lookup("sha1", md5) == []
    assert index.lookup("md5", "0" * 32) == []
    assert len(index) == 3  # lookups of missing values do not grow it


# --- Matcher -----------------------------------------------------------------------------------


def hashes_with(
    variants: list[str] | None = None,
    *,
    quality: int | None = 100,
    md5: str = "1" * 32,
    sha1: str = "2" * 40,
    sha256: str = "3" * 64,
) -> ImageHashes:
    variants = variants or []
    return ImageHashes(
        sha256=sha256,
        md5=md5,
        sha1=sha1,
        size=1234,
        pdq=variants[0] if variants else None,
        pdq_quality=quality if variants else None,
        pdq_variants=tuple(variants),
    )


def eight_variants(rng: np.random.Generator) -> list[str]:
    return random_hashes(rng, 8)


def test_exact_digest_matches() -> None:
    md5, sha1, sha256 = "a" * 32, "b" * 40, "c" * 64
    matcher = Matcher(
        [
            (1, 10, "md5", md5, None),
            (2, 11, "md5", md5, None),
            (3, 10, "sha1", sha1, None),
            (4, 10, "sha256", sha256, None),
            (5, 10, "md5", "f" * 32, None),
        ]
    )
    assert len(matcher) == 5
    decisions = matcher.match(hashes_with(md5=md5, sha1=sha1, sha256=sha256))
    assert sorted(decisions, key=lambda d: d.entry_id) == [
        MatchDecision(1, "exact", "md5", 0),
        MatchDecision(2, "exact", "md5", 0),
        MatchDecision(3, "exact", "sha1", 0),
        MatchDecision(4, "exact", "sha256", 0),
    ]
    assert matcher.match(hashes_with()) == []


def test_pdq_near_match_within_default_threshold() -> None:
    rng = np.random.default_rng(1)
    variants = eight_variants(rng)
    original = variants[0]
    entries = [
        (1, 1, "pdq", flip_bits(rng, original, 20), None),
        (2, 1, "pdq", flip_bits(rng, original, 31), None),
        (3, 1, "pdq", flip_bits(rng, original, 32), None),
        (4, 1, "pdq", random_hashes(rng, 1)[0], None),
    ]
    decisions = Matcher(entries).match(hashes_with(variants))
    assert decisions == [
        MatchDecision(1, "near", "pdq", 20, "original"),
        MatchDecision(2, "near", "pdq", 31, "original"),
    ]


def test_default_threshold_is_configurable() -> None:
    rng = np.random.default_rng(2)
    variants = eight_variants(rng)
    entries = [(1, 1, "pdq", flip_bits(rng, variants[0], 20), None)]
    assert Matcher(entries, default_threshold=19).match(hashes_with(variants)) == []
    assert len(Matcher(entries, default_threshold=20).match(hashes_with(variants))) == 1


def test_per_entry_threshold_override() -> None:
    rng = np.random.default_rng(3)
    variants = eight_variants(rng)
    near20 = flip_bits(rng, variants[0], 20)
    near36 = flip_bits(rng, variants[0], 36)
    entries = [
        (1, 1, "pdq", near20, 10),  # tighter: excludes the hit at 20
        (2, 2, "pdq", near20, None),  # same hash, default threshold: included
        (3, 3, "pdq", near36, 40),  # looser: includes 36 though the default would not
        (4, 2, "pdq", near36, None),
    ]
    decisions = Matcher(entries).match(hashes_with(variants))
    assert [(d.entry_id, d.distance) for d in decisions] == [(2, 20), (3, 36)]


def test_low_quality_never_matches_by_pdq_but_still_exactly() -> None:
    rng = np.random.default_rng(4)
    variants = eight_variants(rng)
    md5 = "e" * 32
    entries = [(1, 1, "pdq", variants[0], None), (2, 1, "md5", md5, None)]
    matcher = Matcher(entries, min_quality=50)
    low = matcher.match(hashes_with(variants, quality=49, md5=md5))
    assert low == [MatchDecision(2, "exact", "md5", 0)]
    at_min = matcher.match(hashes_with(variants, quality=50, md5=md5))
    assert [(d.entry_id, d.kind) for d in at_min] == [(2, "exact"), (1, "near")]
    # No PDQ at all (the image did not decode): digests still match.
    assert matcher.match(hashes_with(None, md5=md5)) == [MatchDecision(2, "exact", "md5", 0)]


def test_low_quality_real_image() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buf, "PNG")
    h = hash_image_bytes(buf.getvalue())
    assert h.pdq is not None and h.pdq_quality is not None and h.pdq_quality < 50
    matcher = Matcher([(1, 1, "pdq", h.pdq, None), (2, 1, "md5", h.md5, None)])
    assert matcher.match(h) == [MatchDecision(2, "exact", "md5", 0)]


def test_best_distance_per_entry() -> None:
    rng = np.random.default_rng(5)
    variants = eight_variants(rng)
    target = flip_bits(rng, variants[0], 25)
    # Make other variants closer to the same entry: rot180 at 10, flipx at 18.
    variants[2] = flip_bits(rng, target, 10)
    variants[4] = flip_bits(rng, target, 18)
    decisions = Matcher([(7, 1, "pdq", target, None)]).match(hashes_with(variants))
    assert decisions == [MatchDecision(7, "near", "pdq", 10, "rot180")]


@cache
def encoded_photo(transpose: Image.Transpose | None) -> bytes:
    img = Image.open(PHOTOS / "imgaug_quokka.jpg").convert("RGB")
    img.thumbnail((320, 320))
    if transpose is not None:
        img = img.transpose(transpose)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("transpose", "variant"),
    [
        (Image.Transpose.FLIP_LEFT_RIGHT, "flipy"),
        (Image.Transpose.FLIP_TOP_BOTTOM, "flipx"),
        (Image.Transpose.ROTATE_180, "rot180"),
    ],
)
def test_flipped_image_matches_via_its_variant(transpose: Image.Transpose, variant: str) -> None:
    known = hash_image_bytes(encoded_photo(None))
    seen = hash_image_bytes(encoded_photo(transpose))
    assert seen.error is None and seen.pdq is not None and known.pdq is not None
    assert hamming(seen.pdq, known.pdq) > 31  # only a variant can match
    (decision,) = Matcher([(1, 1, "pdq", known.pdq, None)]).match(seen)
    assert (decision.entry_id, decision.kind, decision.variant) == (1, "near", variant)
    assert decision.distance == hamming(seen.pdq_variants[PDQ.VARIANTS.index(variant)], known.pdq)
    assert decision.distance <= 31


def test_reference_rotations_report_the_undoing_variant() -> None:
    original = hash_image_bytes((DIH / "bridge-1-original.jpg").read_bytes())
    matcher = Matcher([(1, 1, "pdq", original.pdq, None)])
    expected = {
        "bridge-2-rotate-90.jpg": "rot270",
        "bridge-4-rotate-270.jpg": "rot90",
        "bridge-6-flipy.jpg": "flipy",
        "bridge-7-flip-plus-1.jpg": "flip_plus1",
    }
    for name, variant in expected.items():
        (decision,) = matcher.match(hash_image_bytes((DIH / name).read_bytes()))
        assert decision.variant == variant, name


def test_uses_the_given_pdq_index() -> None:
    rng = np.random.default_rng(6)
    variants = eight_variants(rng)
    index = LinearPDQIndex()
    matcher = Matcher(
        [(1, 1, "pdq", variants[0], None), (2, 1, "md5", "a" * 32, None)], pdq_index=index
    )
    assert matcher.pdq is index
    assert len(index) == 1
    assert len(matcher) == 2
    index.remove([1])  # a retraction applied to the index takes effect
    assert matcher.match(hashes_with(variants)) == []


# --- bare hashes (the match API) ---------------------------------------------------------------


def test_match_pdq_applies_each_entrys_threshold_per_hash() -> None:
    rng = np.random.default_rng(7)
    q1, q2, unrelated = random_hashes(rng, 3)
    near20, near36 = flip_bits(rng, q1, 20), flip_bits(rng, q1, 36)
    matcher = Matcher(
        [
            (1, 1, "pdq", near20, 10),  # tighter than 20
            (2, 2, "pdq", near20, None),  # the default, 31
            (3, 3, "pdq", near36, 40),  # looser: the query radius must reach 36
            (4, 2, "pdq", near36, None),
            (5, 2, "pdq", q2, None),
        ]
    )
    original = PDQ.VARIANTS[0]
    assert matcher.match_pdq([q1, unrelated, q2, q1]) == [
        [
            MatchDecision(2, "near", "pdq", 20, original),
            MatchDecision(3, "near", "pdq", 36, original),
        ],
        [],
        [MatchDecision(5, "near", "pdq", 0, original)],
        [
            MatchDecision(2, "near", "pdq", 20, original),
            MatchDecision(3, "near", "pdq", 36, original),
        ],
    ]
    assert matcher.match_pdq([]) == []
    # Thresholds follow later changes: entry 3 re-added at the default, entry 1 removed.
    matcher.add_entries([(3, 3, "pdq", near36, None)])
    matcher.remove_entries([(1, "pdq", near20)])
    assert [d.entry_id for d in matcher.match_pdq([q1])[0]] == [2]


def test_match_hashes_answers_each_query_in_order() -> None:
    rng = np.random.default_rng(8)
    (pdq,) = random_hashes(rng, 1)
    md5 = "a" * 32
    matcher = Matcher(
        [(1, 1, "md5", md5, None), (2, 1, "md5", md5, None), (3, 1, "pdq", pdq, None)]
    )
    decisions = matcher.match_hashes(
        [("pdq", flip_bits(rng, pdq, 5)), ("md5", md5), ("sha1", "a" * 40), ("md5", "b" * 32),
         ("pdq", pdq)]
    )  # fmt: skip
    assert decisions == [
        [MatchDecision(3, "near", "pdq", 5, "original")],
        [MatchDecision(1, "exact", "md5", 0), MatchDecision(2, "exact", "md5", 0)],
        [],
        [],
        [MatchDecision(3, "near", "pdq", 0, "original")],
    ]
    assert matcher.match_hashes([]) == []
    # A bare PDQ hash is matched as given: no quality floor and no variants.
    assert Matcher([(1, 1, "pdq", pdq, None)], min_quality=101).match_pdq([pdq])[0] != []
