"""Differential test: fxp against APyTypes on random signed formats, every shared rounding and overflow mode.

Values are drawn as ``k * 2**-(f + e)`` so that both libraries read them exactly; ``e`` extra bits
below the target's binary point give ties and near-ties, and ``k`` reaches past the word to overflow.
Each value is checked along two paths: float → format (``quantize``) and a wider fixed-point format →
format (``requantize``). Raw integers must match exactly: 0 mismatches.
"""

from __future__ import annotations

import apytypes as apy  # pinned in the test extras: a broken install must fail, not skip
import numpy as np
import pytest
import torch

from fxp import Format, quantize

MODES = {
    "nearest_even": "TIES_EVEN",
    "nearest_away": "TIES_AWAY",
    "nearest_up": "TIES_POS",
    "floor": "TO_NEG",
    "ceil": "TO_POS",
    "toward_zero": "TO_ZERO",
}
OVERFLOWS = {"saturate": "SAT", "wrap": "WRAP"}


def _values(rng: np.random.Generator, w: int, e: int, n: int) -> np.ndarray:
    span = 1 << (w + e - 1)  # the word's range in units of the finer step
    k = rng.integers(-span, span, n)
    k[: n // 4] = rng.integers(-4 * span, 4 * span, n // 4)  # a quarter may overflow
    if e:
        half = 1 << (e - 1)
        k[n // 4 : n // 2] = (k[n // 4 : n // 2] >> e << e) + half  # exact ties
        k[n // 2 : n // 2 + n // 8] = (k[n // 2 : n // 2 + n // 8] >> e << e) + half + rng.choice([-1, 1], n // 8)
    return k


def run_differential(n_values: int, seed: int = 0, chunk: int = 4000) -> dict:
    """Compare ``n_values`` random values (each in 12 mode pairs, 2 paths); return the counts."""
    rng = np.random.default_rng(seed)
    stats = {"values": 0, "comparisons": 0, "mismatches": 0, "formats": 0, "first_mismatch": None}
    while stats["values"] < n_values:
        w, f, e = int(rng.integers(2, 33)), int(rng.integers(-8, 41)), int(rng.integers(0, 13))
        k = _values(rng, w, e, min(chunk, n_values - stats["values"]))
        x64 = np.ldexp(k.astype(np.float64), -(f + e))
        fmt = Format(w, f)
        wide = Format(w + e + 3, f + e)
        src = apy.APyFixedArray.from_float(x64, int_bits=wide.int_bits, frac_bits=wide.frac_bits)
        x = torch.from_numpy(x64)
        if w + e + 2 <= 24:  # exactly representable in float32: exercise that path too
            x = x.float()
        x_wide = quantize(x, wide)
        assert x_wide.overflows == 0
        for rounding, q_name in MODES.items():
            for overflow, o_name in OVERFLOWS.items():
                ref = np.asarray(
                    src.cast(
                        int_bits=fmt.int_bits,
                        frac_bits=fmt.frac_bits,
                        quantization=getattr(apy.QuantizationMode, q_name),
                        overflow=getattr(apy.OverflowMode, o_name),
                    ).to_bits(),
                    dtype=np.uint64,
                )
                for path, ours in (
                    ("quantize", quantize(x, fmt, rounding, overflow)),
                    ("requantize", x_wide.requantize(fmt, rounding, overflow)),
                ):
                    got = ours.to_bits().astype(np.uint64)
                    bad = np.flatnonzero(got != ref)
                    stats["comparisons"] += len(ref)
                    stats["mismatches"] += len(bad)
                    if len(bad) and stats["first_mismatch"] is None:
                        i = bad[0]
                        stats["first_mismatch"] = dict(
                            path=path, fmt=str(fmt), rounding=rounding, overflow=overflow,
                            value=float(x64[i]), fxp=int(got[i]), apytypes=int(ref[i]),
                        )
        stats["values"] += len(k)
        stats["formats"] += 1
    return stats


def test_vs_apytypes_100k():
    stats = run_differential(100_000, seed=1)
    assert stats["values"] >= 100_000
    assert stats["mismatches"] == 0, stats["first_mismatch"]


@pytest.mark.slow
def test_vs_apytypes_10m():
    stats = run_differential(10_000_000, seed=2, chunk=50_000)
    print(stats)
    assert stats["mismatches"] == 0, stats["first_mismatch"]


def test_differential_catches_a_wrong_rounding(monkeypatch):
    """The harness itself can fail: swap two rounding modes and it must see mismatches."""
    import fxp.rounding as rounding_mod

    original = rounding_mod.shift_right_round

    def broken(raw, d, rounding, pmax, generator=None):
        return original(raw, d, "floor" if rounding == "nearest_even" else rounding, pmax, generator)

    monkeypatch.setattr(rounding_mod, "shift_right_round", broken)
    assert run_differential(4000, seed=3)["mismatches"] > 0
