"""Exact, slow, obviously-correct references: Python fractions and big integers, one value at a time."""

from __future__ import annotations

import math
from fractions import Fraction

from fxp import Format


def round_fraction(v: Fraction, rounding: str) -> int:
    fl = math.floor(v)
    rem = v - fl
    half = Fraction(1, 2)
    if rounding == "floor":
        return fl
    if rounding == "ceil":
        return fl + (rem > 0)
    if rounding == "toward_zero":
        return fl + (rem > 0 and v < 0)
    if rounding == "nearest_up":
        return fl + (rem >= half)
    if rounding == "nearest_away":
        return fl + (rem > half or (rem == half and v > 0))
    if rounding == "nearest_even":
        return fl + (rem > half or (rem == half and fl % 2 == 1))
    raise ValueError(rounding)


def fit(v: int, fmt: Format, overflow: str) -> tuple[int, bool]:
    if fmt.raw_min <= v <= fmt.raw_max:
        return v, False
    if overflow == "saturate":
        return max(fmt.raw_min, min(fmt.raw_max, v)), True
    w = v % (1 << fmt.word_bits)
    if fmt.signed and w > fmt.raw_max:
        w -= 1 << fmt.word_bits
    return w, True


def quantize_value(x: float | Fraction, fmt: Format, rounding: str, overflow: str) -> tuple[int, bool]:
    """The raw integer of ``x`` in ``fmt`` and whether it overflowed."""
    if isinstance(x, float) and math.isinf(x):
        assert overflow == "saturate"
        return (fmt.raw_max if x > 0 else fmt.raw_min), True
    v = Fraction(x) * Fraction(2) ** fmt.frac_bits
    return fit(round_fraction(v, rounding), fmt, overflow)


# --- integer model descriptions (fxp/fxpm.py): one sample, nested lists of Python ints, loops only ----
def input_value(x: float, fmt: Format) -> int:
    """The ``fixed`` input quantizer: ``clamp(floor(x * 2**frac + 1/2))``."""
    return max(fmt.raw_min, min(fmt.raw_max, math.floor(Fraction(x) * Fraction(2) ** fmt.frac_bits + Fraction(1, 2))))


def requantize_value(acc: int, m: int, s: int, oz: int, lo: int, hi: int) -> int:
    """``(acc*M + 2**(S-1)) >> S`` written as what it means: acc*M/2**S to nearest, ties up; then zero point, clamp."""
    y = math.floor(Fraction(acc * m, 2**s) + Fraction(1, 2)) if s > 0 else acc * m
    return max(lo, min(hi, y + oz))


def _ints(a, n: int) -> list:
    """A numpy array or None (→ n zeros) as Python ints, nested."""
    return [0] * n if a is None else a.tolist()


def int_layer(model, layer: dict, x: list) -> list:
    """``dense`` on [in] or ``conv2d`` on [C][H][W]: ``sum((x - xz)(w - wz)) + bias``, requantized per channel."""
    w = model.array(layer, "weights").tolist()
    n_out = len(w)
    wz, bias = _ints(model.array(layer, "weight_zero_point"), n_out), _ints(model.array(layer, "bias"), n_out)
    mult, shift = model.array(layer, "multiplier").tolist(), model.array(layer, "shift").tolist()
    xz, oz = layer["input_zero_point"], layer["output_zero_point"]
    out_fmt = Format.parse(layer["output_format"])
    lo = oz if layer["relu"] else out_fmt.raw_min

    def finish(acc: int, o: int) -> int:
        return requantize_value(acc, mult[o], shift[o], oz, lo, out_fmt.raw_max)

    if layer["op"] == "dense":
        out = []
        for o in range(n_out):
            acc = bias[o]
            for i in range(len(x)):
                acc += (x[i] - xz) * (w[o][i] - wz[o])
            out.append(finish(acc, o))
        return out
    k, s, p = layer["kernel"], layer["stride"], layer["padding"]
    c_in, h, wd = len(x), len(x[0]), len(x[0][0])
    h_out, w_out = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    out = []
    for o in range(n_out):
        plane = []
        for i in range(h_out):
            row = []
            for j in range(w_out):
                acc = bias[o]
                for c in range(c_in):
                    for di in range(k):  # cross-correlation: kernel tap (di, dj) meets input (i*s+di-p, j*s+dj-p)
                        for dj in range(k):
                            r, q = i * s + di - p, j * s + dj - p
                            if 0 <= r < h and 0 <= q < wd:  # a padded position holds real 0: x - xz = 0, no term
                                acc += (x[c][r][q] - xz) * (w[o][c][di][dj] - wz[o])
                row.append(finish(acc, o))
            plane.append(row)
        out.append(plane)
    return out


def maxpool2d(x: list, k: int, s: int) -> list:
    h_out, w_out = (len(x[0]) - k) // s + 1, (len(x[0][0]) - k) // s + 1
    return [[[max(ch[i * s + di][j * s + dj] for di in range(k) for dj in range(k)) for j in range(w_out)]
             for i in range(h_out)] for ch in x]


def flatten(x) -> list:
    """(C, H, W) order: the last index fastest."""
    return [v for item in x for v in flatten(item)] if isinstance(x, list) else [x]


def run_description(model, x) -> list:
    """Every layer's output for one float sample ``x`` (numpy, the input shape), the quantized input first.

    Only descriptions with a ``fixed`` input quantizer and ``dense``/``conv2d``/``maxpool2d``/``flatten``.
    """
    q = model.spec["input"]["quantizer"]
    assert q["kind"] == "fixed", q
    fmt = Format.parse(q["format"])

    def quantize(v):
        return [quantize(e) for e in v] if isinstance(v, list) else input_value(v, fmt)

    a = quantize(x.tolist())
    outs = [a]
    for layer in model.layers:
        op = layer["op"]
        if op in ("dense", "conv2d"):
            a = int_layer(model, layer, a)
        elif op == "maxpool2d":
            a = maxpool2d(a, layer["kernel"], layer["stride"])
        elif op == "flatten":
            a = flatten(a)
        else:
            raise ValueError(f"no reference for {op}")
        outs.append(a)
    return outs
