"""The golden model: an integer model description run with numpy integer operations only.

This is the single reference every hardware testbench compares against. The only floating-point
step is the input quantizer (a power-of-two scaling, exact in float64); everything after it is
int64 arithmetic, and binary layers run on bit-packed 64-bit words with XNOR and popcount
(``numpy.bitwise_count``). ``run`` returns every layer's integer outputs; bit outputs are returned as
0/1 arrays (1 meaning +1).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fxp.fxpm import Model
from fxp.format import Format


def quantize_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Float inputs (N, *shape) → int64 values or 0/1 bits, as the description's input quantizer says."""
    q = model.spec["input"]["quantizer"]
    x = np.asarray(x, dtype=np.float64).reshape((len(x), *model.spec["input"]["shape"]))
    if q["kind"] == "binarize":
        return (x >= q["threshold"]).astype(np.int64)
    fmt = Format.parse(q["format"])
    return np.clip(np.floor(np.ldexp(x, fmt.frac_bits) + 0.5), fmt.raw_min, fmt.raw_max).astype(np.int64)


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, lo: int, hi: int,
               channel_axis: int) -> np.ndarray:
    """Per-channel ``(acc * mult + 2**(shift-1)) >> shift`` (ties toward +inf), zero point, saturate."""
    view = [1] * acc.ndim
    view[channel_axis] = -1
    m, s = mult.reshape(view), shift.reshape(view)
    y = acc * m
    y = (y + np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)) >> s
    return np.clip(y + out_zp, lo, hi)


def _int_layer(model: Model, layer: dict, x: np.ndarray) -> np.ndarray:
    w = model.array(layer, "weights").astype(np.int64)
    wz = model.array(layer, "weight_zero_point")
    if wz is not None:
        w = w - wz.astype(np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
    x = x - layer["input_zero_point"]
    if layer["op"] == "dense":
        acc = x @ w.T
        axis = 1
    else:
        p, s, k = layer["padding"], layer["stride"], layer["kernel"]
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        cols = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # N, C, H', W', k, k
        n, c, h, wd = cols.shape[:4]
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n, h * wd, c * k * k)
        acc = (cols @ w.reshape(len(w), -1).T).transpose(0, 2, 1).reshape(n, len(w), h, wd)
        axis = 1
    bias = model.array(layer, "bias")
    if bias is not None:
        view = [1] * acc.ndim
        view[axis] = -1
        acc = acc + bias.astype(np.int64).reshape(view)
    out = Format.parse(layer["output_format"])
    oz = layer["output_zero_point"]
    lo = oz if layer["relu"] else out.raw_min
    return requantize(acc, model.array(layer, "multiplier"), model.array(layer, "shift"), oz, lo, out.raw_max, axis)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 array (N, K) → uint64 words (N, ceil(K/64)), bit k at word k // 64, bit k % 64 (LSB first)."""
    packed = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view("<u8")


def xnor_popcount(x_words: np.ndarray, w_words: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """popcount(XNOR(x, w)) over the first k bits for every (row of x, row of w): (N, M) int64.

    Word by word: XOR a word of every x row with the same word of every w row (one broadcast XOR
    into a reused buffer), popcount, and add. Counts of three words (at most 192) add in uint8,
    then into a uint16 total; blocks of ``block`` rows keep every buffer in cache. Padding bits are
    0 in both operands, so they never count as disagreeing.
    """
    words = x_words.shape[1]
    xt, wt = np.ascontiguousarray(x_words.T), np.ascontiguousarray(w_words.T)
    m, n = len(x_words), len(w_words)
    out = np.empty((m, n), dtype=np.int64)
    xor = np.empty((block, n), np.uint64)
    cnt, part = np.empty((block, n), np.uint8), np.empty((block, n), np.uint8)
    total = np.empty((block, n), np.uint16)
    for i in range(0, m, block):
        b = min(block, m - i)
        xo, c, p, tot = xor[:b], cnt[:b], part[:b], total[:b]
        for w0 in range(0, words, 3):
            for w in range(w0, min(words, w0 + 3)):
                np.bitwise_xor(xt[w, i : i + b, None], wt[w][None, :], out=xo)
                if w == w0:  # the group's first count starts the uint8 partial sum
                    np.bitwise_count(xo, out=p)
                else:
                    np.bitwise_count(xo, out=c)
                    np.add(p, c, out=p)
            if w0 == 0:
                np.copyto(tot, p, casting="unsafe")
            else:
                np.add(tot, p, out=tot, casting="unsafe")
        # agreeing bits among the first k: k minus the XOR count (padding bits XOR to 0)
        np.subtract(k, tot, out=out[i : i + b], casting="unsafe")
    return out


def _binary_layer(model: Model, layer: dict, bits: np.ndarray) -> np.ndarray:
    k = bits.shape[1]
    w = model.array(layer, "weights")  # (M, ceil(k/8)) uint8, LSB first
    w_words = pack_bits(np.unpackbits(w, axis=1, count=k, bitorder="little"))
    pc = xnor_popcount(pack_bits(bits), w_words, k)
    thr = model.array(layer, "threshold")
    return pc if thr is None else (pc >= thr.astype(np.int64)).astype(np.int64)


def _maxpool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))


def run(model: Model, x: np.ndarray, batch: int = 1000) -> list[np.ndarray]:
    """Every layer's integer outputs for float inputs ``x``: [quantized input, layer 1, layer 2, ...]."""
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(x), batch):
        a = quantize_input(model, x[i : i + batch])
        seq = [a]
        for layer in model.layers:
            op = layer["op"]
            if op in ("dense", "conv2d"):
                a = _int_layer(model, layer, a)
            elif op == "binary_dense":
                a = _binary_layer(model, layer, a)
            elif op == "maxpool2d":
                a = _maxpool(a, layer["kernel"], layer["stride"])
            else:
                a = a.reshape(len(a), -1)
            seq.append(a)
        outs.append(seq)
    return [np.concatenate(parts) for parts in zip(*outs)]
