"""The multi-index PDQ index against brute force (numpy popcount): exact at every distance,
through the tables, the side buffer and the scan fallback; mutations without a rebuild."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection

import numpy as np
import pytest

from arachne.matcher.hashing import ImageHashes
from arachne.matcher.index import LinearPDQIndex, hex_to_words
from arachne.matcher.kinds import PDQ
from arachne.matcher.match import Matcher
from arachne.matcher.mih import (
    LINEAR_BELOW,
    Layout,
    MIHPDQIndex,
    choose_layout,
    make_pdq_index,
    radii_for,
)

Hits = list[set[tuple[int, int]]]


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)


def flipped(rng: np.random.Generator, word: np.ndarray, k: int) -> np.ndarray:
    """A copy of one (4,) hash with exactly k distinct bits flipped."""
    out = word.copy()
    for bit in rng.choice(256, size=k, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def to_hex(words: np.ndarray) -> list[str]:
    raw = np.asarray(words, dtype=np.uint64).astype(">u8").tobytes()
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def brute_force(ids: np.ndarray, words: np.ndarray, queries: list[str], d: int) -> Hits:
    out = []
    for q in hex_to_words(queries):
        dist = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int64)
        hit = np.nonzero(dist <= d)[0]
        out.append({(int(ids[i]), int(dist[i])) for i in hit})
    return out


def as_sets(results: list[list[tuple[int, int]]]) -> Hits:
    sets = [set(r) for r in results]
    assert [len(s) for s in sets] == [len(r) for r in results], "a hit reported twice"
    return sets


def tables_only(**kw: object) -> MIHPDQIndex:
    """An index that always probes its tables (never the scan fallback), as at 10M."""
    index = MIHPDQIndex(**kw)  # type: ignore[arg-type]
    index.scan_ratio = 0.0
    return index


def planted(rng: np.random.Generator, n: int, n_queries: int) -> tuple[np.ndarray, list[str]]:
    """Random stored hashes plus, for each query, stored hashes at exactly 0, 1, 15, 30, 31,
    32 and 33 bits from it (the boundary of d ≤ 31 on both sides) and a small cluster."""
    queries = random_words(rng, n_queries)
    near = [flipped(rng, q, k) for q in queries for k in (0, 1, 15, 30, 31, 32, 33)]
    cluster = [flipped(rng, near[0], k) for k in (2, 5, 9)]
    stored = np.concatenate([random_words(rng, n), np.array(near), np.array(cluster)])
    return stored[rng.permutation(len(stored))], to_hex(queries)


LAYOUTS = [
    None,  # chosen by size: 16 tables of 11 bits here, probed at radius 1
    Layout.even(11, 12),  # the 10M shape (10 tables at radius 2, one at 1), with gaps
    Layout.even(16, 9),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["auto", "11x12", "16x9"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_against_brute_force(layout: Layout | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words, queries = planted(rng, 1500, 12)
    ids = rng.permutation(10 * len(words))[: len(words)].astype(np.int64)  # arbitrary ids
    index = tables_only(buffer_limit=200, layout=layout, threads=2)
    cut = len(words) - 150  # the rest stays in the side buffer
    index.add(ids[:cut].tolist(), to_hex(words[:cut]))
    index.add(ids[cut:].tolist(), to_hex(words[cut:]))
    assert index.builds == 1 and len(index._buf_ids) == 150
    gone = rng.choice(ids, 40, replace=False)
    index.remove(gone.tolist())
    keep = ~np.isin(ids, gone)
    for d in (31, 30, 32, 0, 1, 15, 20, 33, 40):
        want = brute_force(ids[keep], words[keep], queries, d)
        assert as_sets(index.query(queries, d)) == want, f"max_distance={d}"
    assert any(len(w) > 3 for w in brute_force(ids, words, queries, 31))


def test_boundary_30_31_32() -> None:
    rng = np.random.default_rng(7)
    q = random_words(rng, 1)[0]
    index = tables_only(buffer_limit=50, layout=Layout.even(11, 14))
    at = {30: 1, 31: 2, 32: 3, 33: 4}
    stored = [flipped(rng, q, k) for k in at] + list(random_words(rng, 2000))
    index.add([*at.values(), *range(100, 2100)], to_hex(np.array(stored)))
    assert index.layout == Layout.even(11, 14) and not len(index._buf_ids)
    (query,) = to_hex(q[None])
    assert set(index.query([query], 31)[0]) == {(1, 30), (2, 31)}
    assert set(index.query([query], 30)[0]) == {(1, 30)}
    assert set(index.query([query], 32)[0]) == {(1, 30), (2, 31), (3, 32)}
    assert index.query([query], 29) == [[]]


def test_every_distance_scan_and_tables_agree() -> None:
    rng = np.random.default_rng(11)
    words, queries = planted(rng, 800, 6)
    ids = np.arange(len(words), dtype=np.int64)
    probed = tables_only(buffer_limit=10, layout=Layout.even(11, 12))
    scanned = MIHPDQIndex(buffer_limit=10, layout=Layout.even(11, 12))
    scanned.scan_ratio = 1e9
    for index in (probed, scanned):
        index.add_words(ids, words)
    for d in range(0, 41):
        want = brute_force(ids, words, queries, d)
        assert as_sets(probed.query(queries, d)) == want, d
        assert as_sets(scanned.query(queries, d)) == want, d
    assert probed.last_candidates < scanned.last_candidates  # the tables did prune


def test_add_and_retract_without_rebuild() -> None:
    rng = np.random.default_rng(5)
    words = random_words(rng, 600)
    index = tables_only(buffer_limit=100)
    index.add(list(range(600)), to_hex(words))
    assert index.builds == 1 and len(index) == 600
    q_main, q_new = to_hex(flipped(rng, words[3], 20)[None]), to_hex(random_words(rng, 1))
    # add: goes to the side buffer and is found at once
    index.add([1000], to_hex(flipped(rng, hex_to_words(q_new)[0], 4)[None]))
    assert index.query(q_new, 31) == [[(1000, 4)]]
    assert index.query(q_main, 31) == [[(3, 20)]]
    # retract from the tables (tombstone) and from the buffer
    index.remove([3, 1000, 99_999])
    assert index.query(q_main + q_new, 31) == [[], []]
    assert len(index) == 599 and index.builds == 1
    # re-adding a retracted id works; the merge drops the tombstone
    index.add([3], to_hex(words[3][None]))
    assert index.query(q_main, 31) == [[(3, 20)]]
    index.merge()
    assert index.builds == 2 and len(index._ids) == len(index) == 600
    assert not index._dead.any() and not len(index._buf_ids)
    assert index.query(q_main, 31) == [[(3, 20)]]


def test_buffer_merges_past_its_limit_and_tombstones_compact() -> None:
    rng = np.random.default_rng(6)
    index = tables_only(buffer_limit=64)
    index.add_words(np.arange(500), random_words(rng, 500))
    index.add_words(np.arange(500, 560), random_words(rng, 60))
    assert index.builds == 1 and len(index._buf_ids) == 60
    index.add_words(np.arange(560, 570), random_words(rng, 10))  # 70 > 64: merged
    assert index.builds == 2 and len(index._buf_ids) == 0 and len(index._ids) == 570
    index.remove(range(100))
    assert index.builds == 2 and index._n_dead == 100  # under a quarter: tombstones
    index.remove(range(100, 150))
    assert index.builds == 3 and len(index._ids) == len(index) == 420  # over: compacted


def test_duplicate_hashes_with_different_ids() -> None:
    rng = np.random.default_rng(8)
    h = random_words(rng, 1)
    index = tables_only(buffer_limit=20)
    index.add_words(np.arange(100, 130), random_words(rng, 30))
    index.add_words(np.array([1, 2, 3]), np.repeat(h, 3, axis=0))  # in the tables
    index.add_words(np.array([4]), h)  # in the buffer
    q = to_hex(flipped(rng, h[0], 7)[None])
    assert as_sets(index.query(q, 31)) == [{(1, 7), (2, 7), (3, 7), (4, 7)}]
    index.remove([2, 4])
    assert as_sets(index.query(q, 31)) == [{(1, 7), (3, 7)}]


def test_same_id_twice_is_two_entries_removed_together() -> None:
    rng = np.random.default_rng(9)
    a, b = random_words(rng, 2)
    index = tables_only(buffer_limit=1)
    index.add_words(np.array([7, 8]), np.array([a, random_words(rng, 1)[0]]))
    index.add_words(np.array([7]), b[None])
    assert len(index) == 3
    index.remove([7])
    assert len(index) == 1 and index.query(to_hex(np.array([a, b])), 31) == [[], []]


def test_empty_index() -> None:
    index = MIHPDQIndex()
    assert len(index) == 0 and index.layout is None
    q = to_hex(random_words(np.random.default_rng(0), 2))
    assert index.query(q, 31) == [[], []]
    assert index.query([], 31) == []
    index.remove([1, 2])
    index.add([], [])
    index.merge()
    assert len(index) == 0 and index.layout is None and index.query(q, 31) == [[], []]
    # everything retracted from built tables: empty again
    index = tables_only(buffer_limit=4)
    index.add_words(np.arange(10), random_words(np.random.default_rng(1), 10))
    index.remove(range(10))
    assert len(index) == 0 and index.query(q, 256) == [[], []]


def test_large_hit_sets_grow_scratch_and_output() -> None:
    """5,000 copies of one hash: more hits than the first output rows (1,024) and more
    candidates (16 tables × 5,000) than the first scratch (32,768), in one batch, 2 threads."""
    rng = np.random.default_rng(10)
    h = random_words(rng, 1)
    index = tables_only(buffer_limit=100, threads=2)
    index.add_words(np.arange(5000), np.repeat(h, 5000, axis=0))
    index.add_words(np.arange(5000, 5100), random_words(rng, 100))
    assert len(index.layout.widths) == 16  # type: ignore[union-attr]
    queries = to_hex(np.array([flipped(rng, h[0], 3), random_words(rng, 1)[0]] * 3))
    results = index.query(queries, 31)
    assert index.last_candidates >= 3 * 16 * 5000
    for r in results[0::2]:
        assert sorted(r) == [(i, 3) for i in range(5000)]
    assert results[1::2] == [[], [], []]


def test_threads_split_batches_identically() -> None:
    rng = np.random.default_rng(12)
    words, queries = planted(rng, 3000, 40)
    one, two = tables_only(threads=1, buffer_limit=10), tables_only(threads=2, buffer_limit=10)
    for index in (one, two):
        index.add_words(np.arange(len(words)), words)
    assert one.query(queries, 31) == two.query(queries, 31)


def test_radii_satisfy_pigeonhole() -> None:
    for m in (1, 8, 11, 16):
        for d in range(0, 80):
            radii = radii_for(m, d)
            assert int((radii + 1).sum()) == d + 1 and radii.min() >= -1
            assert radii.max() - radii.min() <= 1
    assert sorted(radii_for(11, 31).tolist()) == [1] + [2] * 10


def test_layouts_are_disjoint_substrings() -> None:
    for m, w in [(11, 24), (11, 12), (16, 16), (16, 9), (8, 32)]:
        layout = Layout.even(m, w)
        spans = sorted(zip(layout.starts, layout.widths, strict=True))
        assert all(s + w <= n for (s, w), (n, _) in zip(spans, spans[1:], strict=False))
        assert spans[-1][0] + spans[-1][1] <= 256
    assert Layout.even(11, 24).widths == (24,) * 3 + (23,) * 8
    assert len(choose_layout(10_000_000).widths) == 11
    assert choose_layout(10_000_000) == Layout.even(11, 24)
    assert choose_layout(200_000) == Layout.even(16, 16)


def test_substrings_match_python_bits() -> None:
    from arachne.matcher.mih_kernels import _substr

    rng = np.random.default_rng(13)
    w = random_words(rng, 3)
    for row in range(3):
        as_int = int(to_hex(w[row][None])[0], 16)
        for layout in (Layout.even(11, 24), Layout.even(11, 12), Layout.even(16, 16)):
            for s, width in zip(layout.starts, layout.widths, strict=True):
                want = (as_int >> (256 - s - width)) & ((1 << width) - 1)
                assert _substr(w.ravel(), 4 * row, s, width) == want


def test_bad_input() -> None:
    index = MIHPDQIndex()
    with pytest.raises(ValueError):
        index.add([1, 2], ["0" * 64])
    with pytest.raises(ValueError):
        index.add([1], ["0" * 62])
    with pytest.raises(ValueError):
        index.add_words([1], np.zeros((1, 3), dtype=np.uint64))


def test_factory_and_matcher() -> None:
    assert isinstance(make_pdq_index(6), LinearPDQIndex)
    assert isinstance(make_pdq_index(LINEAR_BELOW), MIHPDQIndex)
    rng = np.random.default_rng(14)
    stored = to_hex(random_words(rng, 300))
    entries = [(i, 1, "pdq", h, 20 if i % 2 else None) for i, h in enumerate(stored)]
    q = [stored[4], to_hex(flipped(rng, hex_to_words([stored[5]])[0], 25)[None])[0]]
    q += to_hex(random_words(rng, 6))
    hashes = ImageHashes(
        sha256="", md5="", sha1="", size=0, pdq=q[0], pdq_quality=100, pdq_variants=tuple(q)
    )
    assert len(q) == len(PDQ.VARIANTS)
    linear = Matcher(entries).match(hashes)
    mih = Matcher(entries, pdq_index=tables_only(buffer_limit=50)).match(hashes)
    assert mih == linear and [d.entry_id for d in mih] == [4]  # 5 is past its threshold of 20


def _query_in_child(index: MIHPDQIndex, queries: list[str], conn: Connection) -> None:
    conn.send(index.query(queries, 31))


def test_forked_child_queries_with_its_own_threads() -> None:
    """rq forks a work horse per job from a parent that loaded the index: the pool's threads
    do not survive a fork, and a child reusing them would wait forever."""
    rng = np.random.default_rng(15)
    words, queries = planted(rng, 500, 8)
    index = tables_only(threads=2, buffer_limit=10)
    index.add_words(np.arange(len(words)), words)
    want = index.query(queries, 31)  # starts the parent's threads
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_query_in_child, args=(index, queries, child))
    proc.start()
    try:
        assert parent.poll(20), "the forked child hung"
        assert parent.recv() == want
    finally:
        proc.join(5)
        proc.kill()
