"""What the testbenches feed a unit: seeded random vectors, corner cases first, and requantization ties.

Random vectors alone miss rare cases that decide bit-exactness. The stream therefore starts with
corner cases (every lane at its lowest or highest value, or at the input zero point) and, for a MAC
unit, one vector per output (up to :data:`MAX_TIES`) whose accumulator lands exactly halfway between
two output values, where the rounding rule (ties toward +∞) decides the result. Without those, a unit
that rounds ties the other way passes millions of random vectors.

Vectors come in blocks, each seeded by (seed, block number): any block can be made again on its own
(the replay harness names a failing vector out of millions), and a block holds about 2**21 lanes
whatever the width, which bounds the memory of the golden model's float64 input.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FxpError
from fxp.fxpm import Model
from sim.lanes import lane_range

BLOCK_LANES = 1 << 21
MAX_TIES = 64  # tie vectors at the start of the stream: one per output, for the first outputs


def block_rows(sidecar: dict) -> int:
    """Vectors per block of :func:`input_block` for this unit."""
    return max(1, BLOCK_LANES // sidecar["in_lanes"])


def input_block(sidecar: dict, model: Model, block: int, seed: int) -> np.ndarray:
    """Block ``block`` of the seeded input stream as lane values (rows, MW) int64.

    Lanes span the whole range of the sidecar's input lanes (bits 0/1 for an XNOR unit). Block 0
    starts with the corner cases and, for a MAC unit, the tie vectors of ``model``'s layer.
    """
    rng = np.random.default_rng([seed, block])
    rows, mw = block_rows(sidecar), sidecar["mw"]
    lo, hi = lane_range(sidecar["in_lane_width"], sidecar["in_lane_signed"])
    x = rng.integers(lo, hi + 1, (rows, mw), dtype=np.int64)
    if block == 0:
        first = [np.full(mw, lo), np.full(mw, hi)]
        declared = type(model.ops[0]).fields  # what the layer has, whatever its op
        if "input_zero_point" in declared:
            first.append(np.full(mw, model.ops[0].input_zero_point))
        if "shift" in declared:  # it requantizes: its ties decide bits
            first += requantization_ties(model, lo, hi, seed)
        first = first[:rows]
        x[: len(first)] = np.array(first, np.int64).reshape(len(first), mw)
    return x


def vectors(sidecar: dict, model: Model, n: int, seed: int) -> np.ndarray:
    """The first ``n`` vectors of the seeded input stream as lane values (n, MW) int64."""
    rows = block_rows(sidecar)
    return np.concatenate([input_block(sidecar, model, b, seed)[: n - b * rows] for b in range(-(-n // rows))])


def requantization_ties(model: Model, lo: int, hi: int, seed: int = 0) -> list[np.ndarray]:
    """Input vectors (lanes in ``lo..hi``) on which an output of the layer of ``model`` is a tie.

    A tie is ``acc·M ≡ 2**(S−1) (mod 2**S)``: the add-half-and-shift lands exactly between two
    integers. With ``M = 2**a · m`` (``m`` odd) that means ``acc ≡ 2**(n−1) (mod 2**n)``, ``n = S − a``,
    which exists where ``0 < n``. The tie must also matter: both neighbours of the result lie inside
    the clamp. For each output (the first :data:`MAX_TIES`) a target accumulator is chosen near the
    middle of the output range, a random vector is moved onto it lane by lane, and two lanes make up
    the exact difference. Outputs where no tie can matter (a 31-bit gemmlowp multiplier, whose odd
    part is far larger than the output range, or a shift of 0) get none. A layer with thresholds has
    its ties where the accumulator equals the threshold (the bit turns there): one vector per output.
    """
    op = model.ops[0]
    w = op.array("weights").astype(np.int64)
    if w.ndim != 2:
        raise FxpError(f"requantization ties are for layers of flat input, not {op.op}")
    wz = op.array("weight_zero_point")
    if wz is not None:
        w = w - wz.astype(np.int64)[:, None]
    bias, xz = op.array("bias"), op.input_zero_point
    rng = np.random.default_rng([seed, 1 << 20])
    out = []
    if op.thresholded:
        for o, t in enumerate(op.array("threshold")[:MAX_TIES].tolist()):
            x = _vector_onto(w[o], 0 if bias is None else int(bias[o]), t, xz, lo, hi, rng) if w[o].any() else None
            if x is not None:
                out.append(x)
        return out
    mult, shift = op.array("multiplier"), op.array("shift")
    oz, fmt = op.output_zero_point, op.output_format
    y_lo, y_hi = (oz if op.relu else fmt.raw_min) - oz + 1, fmt.raw_max - oz  # both neighbours unclamped
    for o in range(min(len(w), MAX_TIES)):
        m, s, b = int(mult[o]), int(shift[o]), 0 if bias is None else int(bias[o])
        a = (m & -m).bit_length() - 1
        n = s - a
        if n < 1 or y_lo > y_hi or not w[o].any():
            continue
        x = _tie_vector(w[o], b, m, s, n, xz, lo, hi, y_lo, y_hi, rng)
        if x is not None:
            out.append(x)
    return out


def _tie_vector(w: np.ndarray, b: int, m: int, s: int, n: int, xz: int, lo: int, hi: int, y_lo: int, y_hi: int,
                rng) -> np.ndarray | None:
    """One vector whose accumulator ``Σ (x − xz)·w + b`` is a tie that matters (see :func:`requantization_ties`)."""

    def result(acc: int) -> int:  # the rounded, unclamped output
        return (acc * m + (1 << (s - 1))) >> s

    mid = (y_lo + y_hi) // 2
    base = (mid << s) // m  # an accumulator whose result is near the middle of the range
    for attempt in range(8):
        step = 1 << n
        target = base - base % step + (step >> 1) + step * int(rng.integers(-4, 5)) * attempt
        if not y_lo <= result(target) <= y_hi:
            continue
        x = _vector_onto(w, b, target, xz, lo, hi, rng, tries=1)
        if x is not None:
            return x
    return None


def _vector_onto(w: np.ndarray, b: int, target: int, xz: int, lo: int, hi: int, rng, tries: int = 8) -> np.ndarray | None:
    """A vector (lanes in ``lo..hi``) whose accumulator ``Σ (x − xz)·w + b`` is exactly ``target``: a random
    one moved onto it lane by lane, the largest weights first, two lanes making up the exact difference."""
    for _ in range(tries):
        x = rng.integers(lo, hi + 1, len(w), dtype=np.int64)
        left = target - (int((x - xz) @ w) + b)
        for j in np.argsort(-np.abs(w), kind="stable"):  # coarse: the largest weights first
            if w[j] and left:
                d = int(np.clip(round(left / int(w[j])), lo - x[j], hi - x[j]))
                x[j] += d
                left -= d * int(w[j])
        if left and not _close_exactly(x, w, left, lo, hi, rng):
            continue
        if sum((int(v) - xz) * int(c) for v, c in zip(x, w)) + b == target:  # Python integers: no overflow
            return x
    return None


def _close_exactly(x: np.ndarray, w: np.ndarray, left: int, lo: int, hi: int, rng, pairs: int = 200) -> bool:
    """Change two lanes ``i, j`` of ``x`` (in place) so that ``δi·w[i] + δj·w[j] == left``; whether it worked."""
    lanes = np.flatnonzero(w)
    for _ in range(pairs if len(lanes) > 1 else 0):
        i, j = (int(v) for v in rng.choice(lanes, 2, replace=False))
        di = np.arange(lo - x[i], hi - x[i] + 1, dtype=np.int64)
        rest = left - di * w[i]
        ok = (rest % w[j] == 0) & (rest // w[j] >= lo - x[j]) & (rest // w[j] <= hi - x[j])
        if ok.any():
            k = int(np.flatnonzero(ok)[0])
            x[i] += di[k]
            x[j] += rest[k] // w[j]
            return True
    return False
