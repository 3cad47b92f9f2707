"""Compiled inner loops of the multi-index PDQ index (numba, ``nogil`` so threads run in parallel).

Hashes are stored flat: hash ``i`` is ``W[4*i : 4*i+4]``, big-endian uint64 words, so bit 0 of
the 256-bit hash is the top bit of word 0. A table ``t`` indexes the substring of ``widths[t]``
bits starting at bit ``starts[t]`` as a CSR: ``post[t, offsets[b+k] : offsets[b+k+1]]`` are the
positions whose substring is ``k`` (``b = off_base[t]``).

``warm_up`` compiles every kernel when a process makes its first index and caches the machine
code on disk (``cache=True``): ~2.5 s on a fresh checkout, ~0.3 s to load it afterwards.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _ctpop(typingctx, x):
    """Hardware popcount (LLVM ``ctpop``): numba has no popcount of its own."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch element ``idx`` (flat, C order) of ``arr`` into L2 (``llvm.prefetch``, read,
    locality 2): a prefetch retires at once, so thousands can be in flight, where loads
    would stall once the reorder buffer fills."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        name = "llvm.prefetch.p0" if str(i8p) == "ptr" else "llvm.prefetch.p0i8"  # LLVM < 15
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        consts = [ir.Constant(i32, v) for v in (0, 2, 1)]  # read, L2, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), *consts])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _dist(W, i, q0, q1, q2, q3):
    b = 4 * i
    return np.int64(
        _ctpop(W[b] ^ q0) + _ctpop(W[b + 1] ^ q1) + _ctpop(W[b + 2] ^ q2) + _ctpop(W[b + 3] ^ q3)
    )


@njit(inline="always")
def _substr(W, base, start, width):
    """Bits [start, start+width) of the hash at W[base:base+4], as an int (width ≤ 32)."""
    j = base + (start >> 6)
    end = (start & 63) + width
    if end <= 64:
        v = W[j] >> np.uint64(64 - end)
    else:
        lo = end - 64
        v = (W[j] << np.uint64(lo)) | (W[j + 1] >> np.uint64(64 - lo))
    return np.int64(v & np.uint64((1 << width) - 1))


@njit(nogil=True, cache=True)
def build_table(W, n, start, width, offsets, post_row):
    """Counting sort of positions 0..n-1 by substring: fills ``offsets`` (2^width + 1) and
    ``post_row`` (n). Reverse scatter keeps each bucket in ascending position order and needs
    no cursor array (saves 2^width words while building)."""
    offsets[:] = 0
    for i in range(n):
        offsets[_substr(W, 4 * i, start, width)] += 1
    acc = 0
    for k in range(offsets.shape[0] - 1):
        acc += offsets[k]
        offsets[k] = acc  # end of bucket k
    offsets[offsets.shape[0] - 1] = n
    for i in range(n - 1, -1, -1):
        k = _substr(W, 4 * i, start, width)
        offsets[k] -= 1
        post_row[offsets[k]] = i  # ends as the start of bucket k


@njit(inline="always")
def _first_table(W, pos, qk, starts, widths, radii, t):
    """Whether ``t`` is the first table in which the hash at ``pos`` is within radius of the
    query: a hit is reported from that table only, so no dedupe set is needed."""
    for u in range(t):
        if radii[u] >= 0:
            du = _ctpop(np.uint64(_substr(W, 4 * pos, starts[u], widths[u]) ^ qk[u]))
            if np.int64(du) <= radii[u]:
                return False
    return True


@njit(nogil=True, cache=True)
def query_mih(
    Q,
    q_from,
    out,
    cand,
    ct,
    W,
    dead,
    offsets,
    off_base,
    post,
    starts,
    widths,
    radii,
    masks,
    mask_base,
    max_d,
):
    """Range search of queries ``q_from``… of ``Q`` (flat words) through the tables.

    Table ``t`` is probed at every key within ``radii[t]`` bits of the query's substring
    (``masks[mask_base[t]:mask_base[t+1]]`` are the XOR patterns; radius < 0 skips the table).
    When sum(radii + 1) > max_d, pigeonhole makes this exact.

    Nearly all the time is cache misses (offsets, posting lists, hashes: ~7k lines a query at
    10M), so the loops are shaped for memory-level parallelism: phases (probe keys, key
    ranges, candidate positions, verification) each prefetch what the next one reads, so the
    misses of a phase overlap instead of waiting one by one (1.45× over the same loops
    without prefetch); no branch on a freshly loaded value in the probe loop (a mispredict
    there waits for the miss); no array reassigned in a loop (numba would refcount it on
    every iteration: 3× slower), which is why scratch and output come from the caller.

    Hits go to ``out`` rows (query, position, distance). Returns (rows written, first query
    not done, candidates verified, scratch needed): when ``out`` or ``cand`` is too small for
    a query, the caller grows it (to the scratch needed, if non-zero) and resumes there.
    """
    nq = Q.shape[0] // 4
    m = starts.shape[0]
    cap = out.shape[0]
    n_probe = mask_base[m]
    n_post = post.shape[1]
    ks = np.empty(n_probe, np.int64)
    rs = np.empty(n_probe, np.int64)
    re = np.empty(n_probe, np.int64)
    rt = np.empty(n_probe, np.int64)
    qk = np.empty(m, np.int64)
    n_out = 0
    total_cand = 0
    for qi in range(q_from, nq):
        q0, q1, q2, q3 = Q[4 * qi], Q[4 * qi + 1], Q[4 * qi + 2], Q[4 * qi + 3]
        n_k = 0
        for t in range(m):
            if radii[t] < 0:
                continue
            k0 = _substr(Q, 4 * qi, starts[t], widths[t])
            qk[t] = k0
            ob = off_base[t]
            for i in range(mask_base[t], mask_base[t + 1]):
                k = ob + (k0 ^ masks[i])
                ks[n_k] = k
                rt[n_k] = t
                n_k += 1
                _prefetch(offsets, k)
        n_r = 0
        n_c = 0
        for i in range(n_k):
            k = ks[i]
            t = rt[i]
            s = np.int64(offsets[k])
            e = np.int64(offsets[k + 1])
            _prefetch(post, t * n_post + s)
            rs[n_r] = s
            re[n_r] = e
            rt[n_r] = t
            n_r += e > s
            n_c += e - s
        if n_c > cand.shape[0]:
            return n_out, qi, total_cand, n_c
        n_c = 0
        for i in range(n_r):
            t = rt[i]
            for p in range(rs[i], re[i]):
                pos = post[t, p]
                _prefetch(W, 4 * np.int64(pos))
                cand[n_c] = pos
                ct[n_c] = t
                n_c += 1
        total_cand += n_c
        row0 = n_out
        for c in range(n_c):
            pos = cand[c]
            d = _dist(W, pos, q0, q1, q2, q3)
            if (
                d <= max_d
                and not dead[pos]
                and _first_table(W, pos, qk, starts, widths, radii, ct[c])
            ):
                if n_out >= cap:
                    return row0, qi, total_cand, 0
                out[n_out, 0] = qi
                out[n_out, 1] = pos
                out[n_out, 2] = d
                n_out += 1
    return n_out, nq, total_cand, 0


@njit(nogil=True, cache=True)
def query_linear(Q, q_from, out, W, n, dead, max_d):
    """Exact brute force over the first ``n`` hashes of ``W`` (the side buffer, and distances
    too large for the tables). Same ``out`` and return contract as ``query_mih``."""
    nq = Q.shape[0] // 4
    cap = out.shape[0]
    n_out = 0
    for qi in range(q_from, nq):
        q0, q1, q2, q3 = Q[4 * qi], Q[4 * qi + 1], Q[4 * qi + 2], Q[4 * qi + 3]
        row0 = n_out
        for pos in range(n):
            d = _dist(W, pos, q0, q1, q2, q3)
            if d <= max_d and not dead[pos]:
                if n_out >= cap:
                    return row0, qi, (qi - q_from) * n, 0
                out[n_out, 0] = qi
                out[n_out, 1] = pos
                out[n_out, 2] = d
                n_out += 1
    return n_out, nq, (nq - q_from) * n, 0


@njit(nogil=True, cache=True)
def mark_dead(ids, dead, sorted_remove):
    """Tombstone every position whose id is in ``sorted_remove``; returns how many were new."""
    newly = 0
    k = sorted_remove.shape[0]
    for i in range(ids.shape[0]):
        j = np.searchsorted(sorted_remove, ids[i])
        if j < k and sorted_remove[j] == ids[i] and not dead[i]:
            dead[i] = 1
            newly += 1
    return newly


_warm = False


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel for the exact argument types the
    index passes, once per process: a first query then costs no compile, and rq's forked
    work horses inherit the compiled code from the parent."""
    global _warm
    if _warm:
        return
    W = np.zeros(8, np.uint64)  # two hashes
    out = np.empty((4, 3), np.int64)
    dead = np.zeros(2, np.uint8)
    offsets = np.zeros(3, np.uint32)  # one table of 1 bit
    post = np.zeros((1, 2), np.uint32)
    zero, scratch = np.zeros(1, np.int64), np.zeros(2, np.int64)
    build_table(W, 2, 0, 1, offsets, post[0])
    tables = (offsets, zero, post, zero, np.ones(1, np.int64), zero, zero, np.array([0, 1]))
    query_mih(W, 0, out, scratch, scratch.copy(), W, dead, *tables, 0)
    query_linear(W, 0, out, W, 2, dead, 0)
    mark_dead(scratch, dead.copy(), zero)
    _warm = True
