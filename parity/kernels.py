"""The compiled single pass behind `parity.compare.difference` for outputs above compare.COMPILED_ABOVE elements
(numba; smaller ones take compare.numpy_pass), and exact order statistics by selection.

`difference_pass(reference, candidate, atol, rtol)` reads both arrays once, in blocks of compare.BLOCK elements
that stay in the CPU's cache, and returns the sums, counts and extremes every difference statistic is made of, plus
the largest |d| of each block and how many elements of each block are non-finite: the worst element and the
profile's worst elements are then found by re-reading only the blocks that can hold them. Nothing is allocated
per element: the extra memory is 16 bytes per block (1/256 of a float32 output).

Arithmetic is float64 throughout, as numpy's would be: each element is widened to float64, |c - r|, |r|, the
relative error |c - r| / |r| and the elementwise rule atol + rtol·|r| are computed exactly as the plain numpy
expressions compute them; only the order of the float64 additions differs (blockwise, in SIMD lanes), which moves
sums by a few units in the last place. Maxima are taken on the IEEE bit patterns of non-negative doubles (an integer
max, which the vectoriser can use, where a float max with NaN semantics stays scalar).

A block is first summed as if every element were finite; when its sums of squares come out non-finite (a NaN or Inf
on either side, or float64 values above ~1e154) the block is summed again with the masks, so the common case pays
nothing for them. The relative error needs a division per element, which would halve the pass: the largest one is
found exactly by dividing only in blocks where some |d| exceeds the largest quotient so far times |r| (multiplied,
with a margin of 4 ulp so none is missed); its sum (for mean_rel) is taken over every element only when asked for.

Numba has no float16: those arrays (and any dtype numba cannot read) are widened to float32 one chunk at a time.
Compiled code is cached on disk (numba's `cache=True`: next to this file, or in numba's user-wide cache directory
where that is read-only; `NUMBA_CACHE_DIR` moves it); the first use of a dtype pair compiles it (about a second).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from parity.compare import (BLOCK, N_CAND_NONFINITE, N_FINITE, N_INF_KEY, N_OUTSIDE, N_REF_NONFINITE, N_REL,
                            N_ZEROS, S_ABS, S_CC, S_MAX_REL, S_RC, S_REL, S_RR, S_SQ)

CHUNK = 256 * BLOCK  # elements widened at a time for dtypes numba cannot read
# reassociation lets the float64 sums run in SIMD lanes; no nnan/ninf: the masks must see NaN and Inf as they are
_FAST = {"reassoc", "contract", "nsz"}
_JIT = {"cache": True, "nogil": True, "fastmath": _FAST, "error_model": "numpy", "boundscheck": False}
_NATIVE = frozenset("?bBhHiIlLqQfd")  # numpy type chars numba reads (not float16, 'e')

EPS = float(np.finfo(np.float64).eps)


@intrinsic
def _bits(typingctx: Any, x: Any) -> Any:
    """The IEEE bit pattern of a float64 as int64: for x >= 0 (and +inf) it orders as x does."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@intrinsic
def _float(typingctx: Any, bits: Any) -> Any:
    """The float64 whose IEEE bit pattern is an int64 (the inverse of _bits)."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


@njit(**_JIT)
def _abs_sums(ref: Any, cand: Any, atol: float, rtol: float, rel_floor: float) -> Any:
    """|d| of one block: sum, sum of squares, elements outside atol + rtol·|r|, zeros, max (as bits); the non-zero
    references, and how many elements may have a relative error above the largest so far (|d| > rel_floor·|r|,
    multiplied, not divided: a division per element would halve this pass's speed)."""
    s_abs = s_sq = 0.0
    outside = zeros = top = n_rel = hits = 0
    for i in range(ref.size):  # not range(start, stop): a possibly negative index is never vectorised
        r = np.float64(ref[i])
        d = abs(np.float64(cand[i]) - r)
        a = abs(r)
        s_abs += d
        s_sq += d * d
        outside += d > atol + rtol * a
        zeros += d == 0.0
        top = max(top, _bits(d))
        n_rel += a > 0.0
        hits += (d > rel_floor * a) & (a > 0.0)
    return s_abs, s_sq, outside, zeros, top, n_rel, hits


@njit(**_JIT)
def _products(ref: Any, cand: Any) -> Any:
    """sum r², sum c², sum r·c of one block (for the norms and the cosine)."""
    s_rr = s_cc = s_rc = 0.0
    for i in range(ref.size):
        r = np.float64(ref[i])
        c = np.float64(cand[i])
        s_rr += r * r
        s_cc += c * c
        s_rc += r * c
    return s_rr, s_cc, s_rc


@njit(**_JIT)
def _relative(ref: Any, cand: Any) -> Any:
    """|d| / |r| over one block's non-zero references (all finite), in float64: sum and max."""
    s_rel = 0.0
    rel_top = 0
    for i in range(ref.size):
        r = np.float64(ref[i])
        a = abs(r)
        nonzero = a > 0.0
        rel = abs(np.float64(cand[i]) - r) / (a if nonzero else 1.0)
        rel = rel if nonzero else 0.0
        s_rel += rel
        rel_top = max(rel_top, _bits(rel))
    return s_rel, _float(rel_top)


@njit(**_JIT)
def _block_masked(ref: Any, cand: Any, atol: float, rtol: float) -> Any:
    """One block's sums over the elements finite on both sides (the plain rule: non-finite ones count as d = 0 and
    as outside), all in float64; also the non-finite counts, and the elements whose profile key is +inf
    (non-finite, or a float64 difference that overflows)."""
    s_abs = s_sq = s_rr = s_cc = s_rc = s_rel = 0.0
    n_finite = outside = n_rel = zeros = ref_bad = cand_bad = inf_key = 0
    top = 0
    rel_top = 0.0
    for i in range(ref.size):
        r = np.float64(ref[i])
        c = np.float64(cand[i])
        ref_ok = np.isfinite(r)
        cand_ok = np.isfinite(c)
        ref_bad += not ref_ok
        cand_bad += not cand_ok
        if not (ref_ok and cand_ok):
            outside += 1
            inf_key += 1
            continue
        n_finite += 1
        d = abs(c - r)
        a = abs(r)
        s_abs += d
        s_sq += d * d
        s_rr += r * r
        s_cc += c * c
        s_rc += r * c
        outside += d > atol + rtol * a
        if a > 0.0:
            rel = d / a
            s_rel += rel
            n_rel += 1
            rel_top = max(rel_top, rel)
        zeros += d == 0.0
        inf_key += not np.isfinite(d)
        top = max(top, _bits(d))
    return (s_abs, s_sq, s_rr, s_cc, s_rc, s_rel, n_finite, outside, n_rel, ref_bad, cand_bad, zeros, inf_key, top,
            rel_top)


@njit(**_JIT)
def _pass(ref: Any, cand: Any, atol: float, rtol: float, every_rel: bool, first_block: int, sums: Any, counts: Any,
          block_top: Any, block_inf: Any) -> None:
    """Blocks of ref/cand (flat, same length) into the accumulators; block i of this call is block first_block + i.
    sums[S_MAX_REL] holds the largest relative error so far; `every_rel`: sum every relative error (S_REL), else
    divide only in the blocks that may raise the largest."""
    n = ref.size
    for b in range((n + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        stop = min(n, start + BLOCK)
        r = ref[start:stop]
        c = cand[start:stop]
        k = first_block + b
        # first as if every element were finite, in short loops over the block while it is in cache (one loop with
        # every sum does not vectorise); the sums of squares are finite exactly when every value is
        rr, cc, rc = _products(r, c)
        if np.isfinite(rr) and np.isfinite(cc):
            floor = sums[S_MAX_REL] * (1.0 - 4.0 * EPS)  # never above the true product: no larger quotient missed
            s_abs, s_sq, outside, zeros, top, n_rel, hits = _abs_sums(r, c, atol, rtol, floor)
            s_rel, rel_top = _relative(r, c) if hits or every_rel else (0.0, 0.0)
            n_finite, ref_bad, cand_bad, inf_key = stop - start, 0, 0, 0
        else:
            (s_abs, s_sq, rr, cc, rc, s_rel, n_finite, outside, n_rel, ref_bad, cand_bad, zeros, inf_key, top,
             rel_top) = _block_masked(r, c, atol, rtol)
        sums[S_ABS] += s_abs
        sums[S_SQ] += s_sq
        sums[S_RR] += rr
        sums[S_CC] += cc
        sums[S_RC] += rc
        sums[S_REL] += s_rel
        sums[S_MAX_REL] = max(sums[S_MAX_REL], rel_top)
        counts[N_FINITE] += n_finite
        counts[N_OUTSIDE] += outside
        counts[N_REL] += n_rel
        counts[N_REF_NONFINITE] += ref_bad
        counts[N_CAND_NONFINITE] += cand_bad
        counts[N_ZEROS] += zeros
        counts[N_INF_KEY] += inf_key
        block_inf[k] = inf_key
        block_top[k] = top


def _flat(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1)


def _chunks(ref: np.ndarray, cand: np.ndarray) -> Any:
    """(first block, ref part, cand part) in pieces numba can read: the whole arrays, or float32 chunks of CHUNK."""
    if ref.dtype.char in _NATIVE and cand.dtype.char in _NATIVE:
        yield 0, ref, cand
        return
    for start in range(0, ref.size, CHUNK):
        part = slice(start, start + CHUNK)
        yield (start // BLOCK, _widen(ref[part]), _widen(cand[part]))


def _widen(part: np.ndarray) -> np.ndarray:
    return part if part.dtype.char in _NATIVE else part.astype(np.float32 if part.dtype.itemsize < 4 else np.float64)


def difference_pass(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float,
                    every_rel: bool = False) -> dict[str, Any]:
    """The single pass over two arrays of one shape: sums, counts, and per-block maxima (see module doc).
    `every_rel`: also the sum of every relative error (sums[S_REL]; a division per element)."""
    ref, cand = _flat(reference), _flat(candidate)
    blocks = (ref.size + BLOCK - 1) // BLOCK
    sums = np.zeros(7)
    counts = np.zeros(7, dtype=np.int64)
    block_top, block_inf = np.zeros(blocks, dtype=np.int64), np.zeros(blocks, dtype=np.int64)
    for first, r, c in _chunks(ref, cand):
        _pass(r, c, float(atol), float(rtol), every_rel, first, sums, counts, block_top, block_inf)
    return {"ref": ref, "cand": cand, "sums": sums, "counts": counts, "block_top": block_top.view(np.float64),
            "block_inf": block_inf}


@njit(**_JIT)
def _histogram(ref: Any, cand: Any, relative: bool, shift: int, prefix: int, hist: Any) -> None:
    """Counts of the next 16 bits of |d| (or of the relative error) among the values whose bits above `shift + 16`
    equal `prefix` (finite, and for the relative error a non-zero reference, only)."""
    for i in range(ref.size):
        r = np.float64(ref[i])
        c = np.float64(cand[i])
        if not (np.isfinite(r) and np.isfinite(c)):
            continue
        d = abs(c - r)
        if relative:
            a = abs(r)
            if a == 0.0:
                continue
            d = d / a
        bits = _bits(d)
        if ((bits >> shift) >> 16) == prefix:
            hist[(bits >> shift) & 0xFFFF] += 1


def select(reference: np.ndarray, candidate: np.ndarray, rank: int, relative: bool = False) -> float:
    """The value of 0-based `rank` in sorted order of |candidate - reference| over the elements finite on both
    sides (`relative`: of |d| / |reference| over those with a non-zero reference), exactly, as np.partition would
    give it, in four radix passes over the bit patterns (16 bits each) and 512 KiB of counters."""
    ref, cand = _flat(reference), _flat(candidate)
    prefix, remaining = 0, rank
    for shift in (48, 32, 16, 0):
        hist = np.zeros(1 << 16, dtype=np.int64)
        for _, r, c in _chunks(ref, cand):
            _histogram(r, c, relative, shift, prefix, hist)
        cumulative = np.cumsum(hist)
        digit = int(np.searchsorted(cumulative, remaining, side="right"))
        if digit >= hist.size:
            raise ValueError(f"rank {rank} is beyond the {int(cumulative[-1])} values")
        remaining -= int(cumulative[digit - 1]) if digit else 0
        prefix = (prefix << 16) | digit
    return float(np.int64(prefix).view(np.float64))
