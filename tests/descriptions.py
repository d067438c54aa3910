"""Random but valid integer model descriptions, for cross-checking the two integer implementations."""

from __future__ import annotations

import numpy as np

from fxp import fxpm


def int_layer(rng, name, op, in_fmt, n_in_shape, n_out, relu, zero_points, pow2, out_fmt="s8.3", zero_shift=False,
              **conv):
    """One dense/conv2d layer; ``zero_shift`` gives every other channel ``S = 0`` (and ``M`` 1 or 2)."""
    layer = {"name": name, "op": op, "input_format": in_fmt, "weight_format": "s8.6", "output_format": out_fmt,
             "acc_bits": 32, "relu": relu, "weights": f"{name}.w", "bias": f"{name}.b", "multiplier": f"{name}.m",
             "shift": f"{name}.s", "input_zero_point": int(rng.integers(-20, 20)) if zero_points else 0,
             "output_zero_point": int(rng.integers(-20, 20)) if zero_points else 0}
    if op == "dense":
        layer["out_features"] = n_out
        wshape = (n_out, n_in_shape)
    else:
        layer.update(out_channels=n_out, **conv)
        wshape = (n_out, n_in_shape, conv["kernel"], conv["kernel"])
    arrays = {f"{name}.w": rng.integers(-128, 128, wshape).astype(np.int8),
              f"{name}.b": rng.integers(-5000, 5000, n_out).astype(np.int32)}
    if zero_points:
        layer["weight_zero_point"] = f"{name}.wz"
        arrays[f"{name}.wz"] = rng.integers(-10, 10, n_out).astype(np.int32)
    if pow2:
        arrays[f"{name}.m"] = np.ones(n_out, np.int64) << rng.integers(0, 3, n_out)
        arrays[f"{name}.s"] = rng.integers(4, 12, n_out).astype(np.int64)
    else:  # gemmlowp style: a 31-bit multiplier in [2**30, 2**31) and a larger shift
        arrays[f"{name}.m"] = rng.integers(1 << 30, 1 << 31, n_out).astype(np.int64)
        arrays[f"{name}.s"] = rng.integers(36, 44, n_out).astype(np.int64)
    if zero_shift:  # drawn last: the other arrays stay what they are without it
        arrays[f"{name}.m"][::2] = rng.integers(1, 3, (n_out + 1) // 2)
        arrays[f"{name}.s"][::2] = 0
    return layer, arrays, out_fmt


def random_cnn(seed: int, zero_points: bool = False, pow2: bool = True, *, padding: int = 1, stride: int = 1,
               relu: bool = True, fc_relu: bool = False, out_fmt: str = "s8.3",
               zero_shift: bool = False) -> fxpm.Model:
    """conv2d (3x3, 4 channels) → maxpool 2 → flatten → dense 7, on 2x9x9 inputs; the keywords vary the layers."""
    rng = np.random.default_rng(seed)
    spec = {"format": "fxpm", "version": 1, "name": f"rand{seed}",
            "input": {"shape": [2, 9, 9], "quantizer": {"kind": "fixed", "format": "s8.5"}}, "layers": []}
    arrays = {}
    l1, a1, f = int_layer(rng, "conv1", "conv2d", "s8.5", 2, 4, relu, zero_points, pow2, out_fmt, zero_shift,
                          kernel=3, stride=stride, padding=padding)
    spec["layers"] += [l1, {"name": "pool1", "op": "maxpool2d", "kernel": 2, "stride": 2}, {"name": "flat", "op": "flatten"}]
    side = ((9 + 2 * padding - 3) // stride + 1 - 2) // 2 + 1
    l2, a2, f = int_layer(rng, "fc1", "dense", f, 4 * side * side, 7, fc_relu, zero_points, pow2, out_fmt, zero_shift)
    spec["layers"].append(l2)
    arrays.update(a1)
    arrays.update(a2)
    return fxpm.Model(spec, arrays)


def random_bnn(seed: int, sizes=(70, 33, 20, 5)) -> fxpm.Model:
    rng = np.random.default_rng(seed)
    spec = {"format": "fxpm", "version": 1, "name": f"bnn{seed}",
            "input": {"shape": [sizes[0]], "quantizer": {"kind": "binarize", "threshold": 0.5}}, "layers": []}
    arrays = {}
    for i, (k, m) in enumerate(zip(sizes, sizes[1:])):
        name = f"b{i}"
        last = i == len(sizes) - 2
        bits = rng.integers(0, 2, (m, k)).astype(np.uint8)
        arrays[f"{name}.w"] = np.packbits(bits, axis=1, bitorder="little")
        layer = {"name": name, "op": "binary_dense", "out_features": m, "weights": f"{name}.w"}
        if not last:
            arrays[f"{name}.t"] = rng.integers(0, k + 2, m).astype(np.int32)
            layer["threshold"] = f"{name}.t"
        spec["layers"].append(layer)
    return fxpm.Model(spec, arrays)
