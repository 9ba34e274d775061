"""The compiled single pass behind `parity.compare.difference` for outputs above compare.COMPILED_ABOVE elements
(numba; smaller ones take compare.numpy_pass), and exact order statistics by selection.

`difference_pass(reference, candidate, atol, rtol)` reads both arrays once, in blocks of compare.BLOCK elements,
and returns the sums, counts and extremes every difference statistic is made of, the largest |d| of each block and
how many elements of each block are non-finite (the worst element and the profile's worst elements are then found
by re-reading only the blocks that can hold them), and every k-th element for the sampled statistics, copied while
its block is in cache. Nothing is allocated per element: the extra memory is 16 bytes per block (1/256 of a float32
output) and the sample (two float64 values per step-th element; compare.difference takes at most SAMPLE).

Arithmetic is float64 throughout, as numpy's would be: each element is widened to float64, |c - r|, |r|, the
relative error |c - r| / |r| and the elementwise rule atol + rtol·|r| are computed exactly as the plain numpy
expressions compute them (the rule's product is rounded before the sum: no fused multiply-add there); only the
order of the float64 additions differs (blockwise, in SIMD lanes), which moves sums by a few units in the last
place. Maxima are taken on the IEEE bit patterns of non-negative doubles (an integer
max, which the vectoriser can use, where a float max with NaN semantics stays scalar).

How it keeps up with memory (on one core, 2 × 128 MiB float32 in about 20 ms, where reading them alone takes about
16; BENCHMARKS.md): each block is summed as if every element were finite, with only the operations every element
needs: the five sums, the zeros, and two maxima and a minimum (the largest |d|, the smallest |r|, and whether some |d|
exceeds the floor below the largest relative error so far times |r|). A block is read again, while it is still in
cache, only where those say it must be:
- its sums of squares are not finite (a NaN or Inf on either side, or float64 values above ~1e154): summed again
  with the masks;
- some |d| exceeds atol: the elements outside atol + rtol·|r| are counted (none can be where no |d| exceeds atol);
- some reference is zero: the non-zero references are counted, and which |d| exceed the floor times |r|;
- some |d| exceeds the floor times a non-zero |r|: the relative errors are divided out (a division per element
  would halve the pass), and always where `every_rel` asks for their sum (mean_rel). Where floor·|r| can be
  subnormal (|r| below ~1e-308 / floor), rounding there is absolute and could reach |d|: such a block's elements
  are tested again with |d| >= fl(floor·|r|), which misses none.
The loop over the block runs in short runs, each first hinting the run a little further on into the cache
(llvm.prefetch): the CPU's own prefetcher does not keep ahead of a loop this heavy, which ran at a third of the
speed without the hints.

Numba has no float16: those arrays (and any dtype numba cannot read) are widened to float32 one chunk at a time.
Compiled code is cached on disk (numba's `cache=True`: next to this file, or in numba's user-wide cache directory
where that is read-only; `NUMBA_CACHE_DIR` moves it); the first use of a dtype pair compiles it (about a second).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from parity.compare import (BLOCK, N_CAND_NONFINITE, N_FINITE, N_INF_KEY, N_OUTSIDE, N_REF_NONFINITE, N_REL,
                            N_ZEROS, S_ABS, S_CC, S_MAX_REL, S_RC, S_REL, S_RR, S_SQ)

CHUNK = 256 * BLOCK  # elements widened at a time for dtypes numba cannot read
# reassociation lets the float64 sums run in SIMD lanes; no nnan/ninf: the masks must see NaN and Inf as they are
_FAST = {"reassoc", "contract", "nsz"}
_JIT = {"cache": True, "nogil": True, "fastmath": _FAST, "error_model": "numpy", "boundscheck": False}
_NATIVE = frozenset("?bBhHiIlLqQfd")  # numpy type chars numba reads (not float16, 'e')

EPS = float(np.finfo(np.float64).eps)
_INF_BITS = 0x7FF0000000000000  # +inf's bit pattern: above every finite non-negative double's
# below this, floor·|r| may be subnormal, where rounding is no longer relative and can reach |d| itself
_PRODUCTS_EXACT = 4.0 * float(np.finfo(np.float64).tiny)
# the elementwise rule atol + rtol·|r| as numpy rounds it: the product first (no fused multiply-add)
_UNFUSED = {**_JIT, "fastmath": _FAST - {"contract"}}
RUN = 192  # elements summed by one call of _finite_sums (measured here: 128 to 256 within 8 %, 192 the fastest)
AHEAD = 768  # how far ahead (elements) each run prefetches: about what memory delivers while a run is summed


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


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """A hint to bring array[index]'s cache line in (llvm.prefetch: read, high locality, data); never faults, so an
    index past the end is harmless."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        name = "llvm.prefetch.p0" if str(byte_ptr) == "ptr" else "llvm.prefetch.p0i8"  # opaque or typed pointers
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
                                              name)
        builder.call(hint, [builder.bitcast(builder.gep(data, [args[1]]), byte_ptr), ir.Constant(i32, 0),
                            ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.none(array, types.intp), codegen


@njit(**_JIT)
def _fetch(ref: Any, cand: Any, start: int, stop: int) -> None:
    """Prefetch ref[start:stop] and cand[start:stop], one hint per 64-byte line of the wider of the two."""
    step = max(1, 64 // max(ref.itemsize, cand.itemsize))
    for i in range(start, stop, step):
        _prefetch(ref, i)
        _prefetch(cand, i)


@njit(**_JIT)
def _finite_sums(ref: Any, cand: Any, floor: float) -> Any:
    """One short run of elements, as if every value were finite: sums of |d|, d², r², c², r·c; the zeros of d; and,
    as IEEE bit patterns, the largest |d|, the smallest |r|, and the largest bits(|d|) - bits(floor·|r|), which is
    positive exactly when some |d| > floor·|r| (both non-negative: their bit patterns order as they do). Only
    cheap operations per element: whether an element is outside the tolerance, or has a zero reference, is counted
    by the caller only where these maxima say it can be."""
    s_abs = s_sq = s_rr = s_cc = s_rc = 0.0
    zeros = top = above = 0
    low = _INF_BITS
    for i in range(ref.size):  # not range(start, stop): a possibly negative index is never vectorised
        r = np.float64(ref[i])
        c = np.float64(cand[i])
        d = abs(c - r)
        a = abs(r)
        s_abs += d
        s_sq += d * d
        s_rr += r * r
        s_cc += c * c
        s_rc += r * c
        zeros += d == 0.0
        top = max(top, _bits(d))
        low = min(low, _bits(a))
        above = max(above, _bits(d) - _bits(floor * a))
    return s_abs, s_sq, s_rr, s_cc, s_rc, zeros, top, low, above


@njit(**_JIT)
def _block_sums(ref: Any, cand: Any, start: int, stop: int, floor: float) -> Any:
    """_finite_sums over ref[start:stop] in runs of RUN elements, each run first prefetching the run AHEAD elements
    further on: the loop is long for the CPU's own prefetcher to keep ahead of (measured: a third of the speed
    without the hints, and as slow with longer runs), and a run's few elements keep the loop's many accumulators
    in registers."""
    n = ref.size
    s_abs = s_sq = s_rr = s_cc = s_rc = 0.0
    zeros = top = above = 0
    low = _INF_BITS
    for run in range(start, stop, RUN):
        ahead = min(n, run + AHEAD)
        _fetch(ref, cand, ahead, min(n, ahead + RUN))
        end = min(stop, run + RUN)
        r_abs, r_sq, r_rr, r_cc, r_rc, r_zeros, r_top, r_low, r_above = _finite_sums(ref[run:end], cand[run:end],
                                                                                     floor)
        s_abs += r_abs
        s_sq += r_sq
        s_rr += r_rr
        s_cc += r_cc
        s_rc += r_rc
        zeros += r_zeros
        top = max(top, r_top)
        low = min(low, r_low)
        above = max(above, r_above)
    return s_abs, s_sq, s_rr, s_cc, s_rc, zeros, top, low, above


@njit(**_UNFUSED)
def _outside(ref: Any, cand: Any, atol: float, rtol: float) -> int:
    """How many elements of one block (all finite) have |d| > atol + rtol·|r|."""
    outside = 0
    for i in range(ref.size):
        r = np.float64(ref[i])
        outside += abs(np.float64(cand[i]) - r) > atol + rtol * abs(r)
    return outside


@njit(**_JIT)
def _nonzero(ref: Any, cand: Any, floor: float) -> Any:
    """Of one block (all finite): the references that are not zero, and how many of those have a non-zero |d| of at
    least fl(floor·|r|): every element whose |d| / |r| can exceed the largest so far, also where floor·|r| is
    subnormal and rounds up to |d|."""
    nonzero = hits = 0
    for i in range(ref.size):
        r = np.float64(ref[i])
        a = abs(r)
        nonzero += a > 0.0
        d = abs(np.float64(cand[i]) - r)
        hits += (d >= floor * a) & (d > 0.0) & (a > 0.0)
    return nonzero, hits


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


@njit(**_UNFUSED)
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
          block_top: Any, block_inf: Any, step: int, sample_ref: Any, sample_cand: Any) -> None:
    """Blocks of ref/cand (flat, same length) into the accumulators; block i of this call is block first_block + i.
    sums[S_MAX_REL] holds the largest relative error so far; `every_rel`: sum every relative error (S_REL), else
    divide only in the blocks that may raise the largest. Every `step`-th element (of the whole output, counted
    from its first) is copied into sample_ref / sample_cand while its block is in cache. The sums and counts are
    kept in locals and stored once."""
    n = ref.size
    first = first_block * BLOCK  # this part's first element in the whole output
    s_abs = s_sq = s_rr = s_cc = s_rc = s_rel = 0.0
    max_rel = sums[S_MAX_REL]
    n_finite = n_outside = n_rel = n_ref_bad = n_cand_bad = n_zeros = n_inf_key = 0
    for b in range((n + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        stop = min(n, start + BLOCK)
        r = ref[start:stop]
        c = cand[start:stop]
        floor = max_rel * (1.0 - 4.0 * EPS)  # fl(floor·|r|) < |d| wherever |d| / |r| > max_rel, |r| not tiny
        # first as if every element were finite; the sums of squares are finite exactly when every value is
        b_abs, b_sq, rr, cc, rc, zeros, top, low, above = _block_sums(ref, cand, start, stop, floor)
        if np.isfinite(rr) and np.isfinite(cc):
            # nothing is outside where no |d| exceeds atol (atol + rtol·|r| >= atol); no reference is zero where
            # the smallest |r| is positive, and then `above` alone says whether a quotient can exceed the floor
            outside = _outside(r, c, atol, rtol) if _float(top) > atol else 0
            if low == 0:
                b_rel, hits = _nonzero(r, c, floor)
            else:  # above alone is exact while floor·|r| is a normal number (or floor is 0) for every element
                b_rel = stop - start
                tiny = 0.0 < floor * _float(low) < _PRODUCTS_EXACT
                hits = int(above > 0 or (tiny and _nonzero(r, c, floor)[1] > 0))
            b_srel, rel_top = _relative(r, c) if hits or every_rel else (0.0, 0.0)
            finite, ref_bad, cand_bad, inf_key = stop - start, 0, 0, 0
        else:
            (b_abs, b_sq, rr, cc, rc, b_srel, finite, outside, b_rel, ref_bad, cand_bad, zeros, inf_key, top,
             rel_top) = _block_masked(r, c, atol, rtol)
        for i in range(((first + start + step - 1) // step) * step - first, stop, step):
            sample_ref[(first + i) // step] = ref[i]
            sample_cand[(first + i) // step] = cand[i]
        s_abs += b_abs
        s_sq += b_sq
        s_rr += rr
        s_cc += cc
        s_rc += rc
        s_rel += b_srel
        max_rel = max(max_rel, rel_top)
        n_finite += finite
        n_outside += outside
        n_rel += b_rel
        n_ref_bad += ref_bad
        n_cand_bad += cand_bad
        n_zeros += zeros
        n_inf_key += inf_key
        block_inf[first_block + b] = inf_key
        block_top[first_block + b] = top
    sums[S_ABS] += s_abs
    sums[S_SQ] += s_sq
    sums[S_RR] += s_rr
    sums[S_CC] += s_cc
    sums[S_RC] += s_rc
    sums[S_REL] += s_rel
    sums[S_MAX_REL] = max_rel
    counts[N_FINITE] += n_finite
    counts[N_OUTSIDE] += n_outside
    counts[N_REL] += n_rel
    counts[N_REF_NONFINITE] += n_ref_bad
    counts[N_CAND_NONFINITE] += n_cand_bad
    counts[N_ZEROS] += n_zeros
    counts[N_INF_KEY] += n_inf_key


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
                    every_rel: bool = False, step: int = 1) -> dict[str, Any]:
    """The single pass over two arrays of one shape: sums, counts, and per-block maxima (see module doc).
    `every_rel`: also the sum of every relative error (sums[S_REL]; a division per element). `step`: every
    step-th element, from the first, is also returned in float64 ("sample": golden, candidate), as
    reference.reshape(-1)[::step] would give it."""
    ref, cand = _flat(reference), _flat(candidate)
    blocks = (ref.size + BLOCK - 1) // BLOCK
    sums = np.zeros(7)
    counts = np.zeros(7, dtype=np.int64)
    block_top, block_inf = np.zeros(blocks, dtype=np.int64), np.zeros(blocks, dtype=np.int64)
    sample = np.empty((2, -(-ref.size // step)))
    for first, r, c in _chunks(ref, cand):
        _pass(r, c, float(atol), float(rtol), every_rel, first, sums, counts, block_top, block_inf, step, sample[0],
              sample[1])
    return {"ref": ref, "cand": cand, "sums": sums, "counts": counts, "block_top": block_top.view(np.float64),
            "block_inf": block_inf, "sample": (sample[0], sample[1])}


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
