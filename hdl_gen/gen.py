"""``fxp gen unit``: one engine as Verilog, its documented wrapper, a JSON sidecar and its layer.

A unit folder holds everything ``fxp sim`` needs and nothing generated elsewhere:

``<top>.v``
    The Amaranth unit (ports ``i__*``, ``o__*``, ``clk``, ``rst``).
``<top>_top.v``
    The wrapper from ``templates/stream_top.v.j2``: ports ``clk, rst, in_valid, in_ready, in_data,
    out_valid, out_ready, out_data``, lanes packed little-endian.
``<top>.json``
    Widths, packing, timing and the parameters used.
``layer.fxpm``
    The one-layer integer model description the unit computes (given or random), from which the
    golden model makes the expected outputs.
``dp16kd_sim.v`` (with ``--weights-in dp16kd`` only)
    A simulation model of the ECP5 block RAM primitive, for the simulators; not for synthesis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import fxp
from fxp import fxpm
from fxp.errors import FxpError
from fxp.resources import render, write_atomic
from hdl_gen import dp16kd

KINDS = ("xnor", "mac")


def random_layer(kind: str, mw: int, mh: int, seed: int) -> fxpm.Model:
    """A random one-layer description: binary_dense with thresholds, or an int8 dense layer."""
    rng = np.random.default_rng(seed)
    if kind == "xnor":
        spec = {"format": "fxpm", "version": 1, "name": "unit",
                "input": {"shape": [mw], "quantizer": {"kind": "binarize", "threshold": 0.5}},
                "layers": [{"name": "layer", "op": "binary_dense", "out_features": mh, "weights": "w", "threshold": "t"}]}
        arrays = {"w": np.packbits(rng.integers(0, 2, (mh, mw)).astype(np.uint8), axis=1, bitorder="little"),
                  "t": rng.integers(0, mw + 2, mh).astype(np.int32)}
    else:
        spec = {"format": "fxpm", "version": 1, "name": "unit",
                "input": {"shape": [mw], "quantizer": {"kind": "fixed", "format": "s8.0"}},
                "layers": [{"name": "layer", "op": "dense", "out_features": mh, "input_format": "s8.0",
                            "weight_format": "s8.0", "output_format": "s8.0", "acc_bits": 32, "relu": True,
                            "input_zero_point": 0, "output_zero_point": 0, "weights": "w", "bias": "b",
                            "multiplier": "m", "shift": "s"}]}
        arrays = {"w": rng.integers(-128, 128, (mh, mw)).astype(np.int8),
                  "b": rng.integers(-4096, 4096, mh).astype(np.int32),
                  "m": rng.integers(1 << 30, 1 << 31, mh).astype(np.int64),
                  "s": np.full(mh, 31 + max(0, int(np.ceil(np.log2(mw)))) + 6, np.int64)}
    return fxpm.Model(spec, arrays)


def build_unit(kind: str, model: fxpm.Model, layer: str, pe: int, simd: int, options: dict | None = None):
    """The unit for ``layer``; ``options`` are its keyword arguments (weights_in, pipeline, popcount, table_bits)."""
    from hdl_gen.mac import MacUnit
    from hdl_gen.xnor import XnorPopcountUnit

    if kind not in KINDS:
        raise FxpError(f"unit kind {kind!r} is not known; use {' or '.join(KINDS)}")
    options = dict(options or {})
    if kind == "mac" and options.pop("popcount", "tree") != "tree":
        raise FxpError("--popcount is for xnor units; a MAC unit always sums products in an adder tree")
    if kind == "mac" and options.pop("table_bits", None) is not None:
        raise FxpError("--table-bits (block RAM tables of counts) is for xnor units; a MAC unit's block RAM "
                       "holds weight words: drop --table-bits")
    return (XnorPopcountUnit if kind == "xnor" else MacUnit).from_layer(model, layer, pe=pe, simd=simd, **options)


OPTIONS = ("popcount", "pipeline", "weights_in", "table_bits")  # the units' keyword options, where set


def sidecar(kind: str, unit, top: str, layer: str, seed: int | None) -> dict:
    in_lw, out_lw = (1, unit.lane_width) if kind == "xnor" else (8, 8)
    return {
        "fxp_version": fxp.__version__, "kind": kind, "top": top, "wrapper": f"{top}_top", "layer": layer,
        "mw": unit.mw, "mh": unit.mh, "pe": unit.pe, "simd": unit.simd, "nf": unit.nf, "sf": unit.sf, "seed": seed,
        "in_width": unit.mw * in_lw, "in_lanes": unit.mw, "in_lane_width": in_lw,
        "out_width": unit.pe * out_lw, "out_lanes": unit.pe, "out_lane_width": out_lw,
        "out_transfers": unit.nf, "cycles_per_output": unit.sf, "cycles_per_vector": unit.nf * unit.sf,
        # clock edges from the one accepting an input to the one raising its first output, no stalls
        "latency_cycles": unit.latency,
        "options": {k: getattr(unit, k) for k in OPTIONS if getattr(unit, k, None) is not None},
        "signed_lanes": kind == "mac",
        # Verilog the simulators need beside the unit (primitive models); synthesis has its own
        "sim_models": [dp16kd.SIM_MODEL] if unit.weights_in == "dp16kd" else [],
    }


def generate(kind: str, out: str | Path, *, mw: int | None = None, mh: int | None = None, pe: int = 1,
             simd: int = 1, seed: int = 0, model_path: str | Path | None = None, layer: str | None = None,
             top: str | None = None, options: dict | None = None) -> dict:
    """Write a unit folder (see the module docstring); returns the sidecar."""
    from hdl_gen.verilog import emit

    if model_path is not None:
        model = fxpm.load(model_path)
        if layer is None:
            raise FxpError("--from needs --layer: the name of the layer to build")
        sub = _one_layer(model, layer)
    else:
        if not mw or not mh:
            raise FxpError("give --mw and --mh (or --from a model and --layer)")
        sub, layer = random_layer(kind, mw, mh, seed), "layer"
    top = top or f"fxp_{kind}"
    unit = build_unit(kind, sub, layer, pe, simd, options)  # validates everything before anything is written
    car = sidecar(kind, unit, top, layer, seed if model_path is None else None)
    verilog = emit(unit, top)
    wrapper = render("stream_top.v.j2", version=fxp.__version__, source=str(model_path or f"random seed {seed}"), **car)
    out = Path(out)
    fxpm.save(out / "layer.fxpm", sub.spec, sub.arrays)
    write_atomic(out / f"{top}.v", verilog)
    write_atomic(out / f"{top}_top.v", wrapper)
    if car["sim_models"]:
        write_atomic(out / dp16kd.SIM_MODEL, dp16kd.sim_model())
    write_atomic(out / f"{top}.json", json.dumps(car, indent=2) + "\n")
    return car


def _one_layer(model: fxpm.Model, name: str) -> fxpm.Model:
    """The sub-description holding only layer ``name``, its input taken as already quantized."""
    idx = next((i for i, x in enumerate(model.layers) if x["name"] == name), None)
    if idx is None:
        raise FxpError(f"no layer {name!r} in the model; layers: {', '.join(x['name'] for x in model.layers)}")
    layer = model.layers[idx]
    width = model.shapes[idx - 1] if idx else tuple(model.spec["input"]["shape"])
    if len(width) != 1:
        raise FxpError(f"layer {name!r} takes {list(width)} input; units take flat vectors (dense, binary_dense)")
    if layer["op"] == "binary_dense":
        quant = {"kind": "binarize", "threshold": 0.5}
    elif layer["op"] == "dense":
        quant = {"kind": "fixed", "format": f"s{layer['input_format'][1:].split('.')[0]}.0"}
        layer = dict(layer, input_format=quant["format"])
    else:
        raise FxpError(f"layer {name!r} is {layer['op']}; units exist for dense and binary_dense")
    keys = [layer[k] for k in ("weights", "bias", "threshold", "multiplier", "shift", "weight_zero_point") if layer.get(k)]
    spec = {"format": "fxpm", "version": 1, "name": f"{model.spec['name']}.{name}",
            "input": {"shape": [int(width[0])], "quantizer": quant}, "layers": [layer]}
    return fxpm.Model(spec, {k: model.arrays[k] for k in keys})
