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
from fxp.format import Format
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
ENGINES = {"binary_dense": "xnor", "dense": "mac"}  # which unit kind builds a layer of each op
MAX_SIZE = 1 << 16  # --mw, --mh of a random layer: larger is refused before anything is allocated


def sidecar(kind: str, unit, top: str, layer: str, seed: int | None) -> dict:
    """What a unit folder says about its unit: the geometry comes from the unit itself."""
    in_width, out_width = unit.mw * unit.in_lane_width, unit.pe * unit.out_lane_width
    return {
        "fxp_version": fxp.__version__, "kind": kind, "top": top, "wrapper": f"{top}_top", "layer": layer,
        "mw": unit.mw, "mh": unit.mh, "pe": unit.pe, "simd": unit.simd, "nf": unit.nf, "sf": unit.sf, "seed": seed,
        # in_data: MW lanes; out_data: PE lanes; lane k at bits [k*width, (k+1)*width), two's complement
        # where signed (a lane narrower than 32 bits is sign- or zero-extended by whoever reads it)
        "in_width": in_width, "in_lanes": unit.mw, "in_lane_width": unit.in_lane_width,
        "in_lane_signed": unit.in_lane_signed, "in_words": -(-in_width // 32),
        "out_width": out_width, "out_lanes": unit.pe, "out_lane_width": unit.out_lane_width,
        "out_lane_signed": unit.out_lane_signed, "out_words": -(-out_width // 32),
        # the width of the running sum each lane keeps (XNOR: the popcount, 0..MW; MAC: acc_bits)
        "accumulator_bits": unit.accumulator_bits,
        "out_transfers": unit.nf, "cycles_per_output": unit.sf, "cycles_per_vector": unit.nf * unit.sf,
        # clock edges from the one accepting an input to the one raising its first output, no stalls
        "latency_cycles": unit.latency,
        # with a skid register on the output (--pipeline), in_ready does not depend on out_ready in the same cycle
        "in_ready_waits_for_out_ready": not unit.pipeline,
        "options": {k: getattr(unit, k) for k in OPTIONS if getattr(unit, k, None) is not None},
        # Verilog the simulators need beside the unit (primitive models); synthesis has its own
        "sim_models": [dp16kd.SIM_MODEL] if unit.weights_in == "dp16kd" else [],
    }


# What a unit folder holds besides the unit's own files: results and build folders of fxp sim.
_SIM_OUTPUTS = ("sim_*.json", "sim_build_*", "replay_build", "amaranth.vcd")


def _check_out(out: Path, force: bool) -> list[Path]:
    """Refuse an --out that is a file, or that holds anything but an earlier unit (or it without --force);
    the paths of the earlier unit to remove."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FxpError(f"--out {out} is a file or a link; give a folder for the unit")
    if not out.exists() or not any(out.iterdir()):
        return []
    try:
        from hdl_gen.unit_folder import read_sidecar, sim_sources

        car = read_sidecar(out)
    except FxpError:
        raise FxpError(f"--out {out} holds files that are not a unit folder; give a new or empty folder") from None
    if not force:
        raise FxpError(f"--out {out} already holds unit {car['top']}; choose another --out or pass --force to replace it")
    mine = [out / n for n in (*sim_sources(car), f"{car['top']}.json", "layer.fxpm")]
    mine += [p for pattern in _SIM_OUTPUTS for p in out.glob(pattern)]
    others = sorted(p.name for p in out.iterdir() if p not in mine)
    if others:
        raise FxpError(f"--out {out} holds other files besides unit {car['top']} ({', '.join(others[:3])}); "
                       "give a new or empty folder")
    return mine


def _remove(paths: list[Path]) -> None:
    import shutil

    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def generate(kind: str | None, out: str | Path, *, mw: int | None = None, mh: int | None = None, pe: int = 1,
             simd: int = 1, seed: int = 0, model_path: str | Path | None = None, layer: str | None = None,
             top: str | None = None, options: dict | None = None, force: bool = False) -> dict:
    """Write a unit folder (see the module docstring); returns the sidecar.

    ``kind`` may be None with ``model_path``: the layer's op picks it. Everything is checked and the
    Verilog emitted before anything is written; an existing unit folder is replaced only with ``force``
    (its files and fxp sim's results go, so the folder never mixes two units).
    """
    from hdl_gen.verilog import emit
    from hdl_gen.unit_folder import check_identifier

    if kind is not None and kind not in KINDS:
        raise FxpError(f"unit kind {kind!r} is not known; use {' or '.join(KINDS)}")
    if model_path is not None:
        if mw is not None or mh is not None:
            raise FxpError("--mw and --mh size a random layer; with --from the layer sets them: drop them")
        model = fxpm.load(model_path)
        if layer is None:
            raise FxpError(f"--from needs --layer: one of {_buildable(model)}")
        sub = _one_layer(model, layer)
        op = sub.layers[0]["op"]
        if kind is not None and ENGINES[op] != kind:
            raise FxpError(f"layer {layer!r} is {op}, which the {ENGINES[op]} unit builds; use fxp gen unit "
                           f"{ENGINES[op]} (or leave the kind out)")
        kind = ENGINES[op]
    else:
        if kind is None:
            raise FxpError("give the unit kind (xnor or mac) for a random layer, or --from MODEL --layer NAME")
        if layer is not None:
            raise FxpError("--layer picks a layer of --from MODEL; give --from too, or drop --layer")
        for name, v in (("--mw", mw), ("--mh", mh)):
            if v is None:
                raise FxpError(f"give {name} (inputs and outputs of a random layer), or --from MODEL --layer NAME")
            if not 1 <= v <= MAX_SIZE:
                raise FxpError(f"{name} must be in 1..{MAX_SIZE}, got {v}")
        sub, layer = random_layer(kind, mw, mh, seed), "layer"
    top = check_identifier(top or f"fxp_{kind}", "--top")
    out = Path(out)
    earlier = _check_out(out, force)
    unit = build_unit(kind, sub, layer, pe, simd, options)  # validates everything before anything is written
    car = sidecar(kind, unit, top, layer, seed if model_path is None else None)
    verilog = emit(unit, top)
    source = f"layer {layer} of {Path(model_path).name}" if model_path is not None else f"random seed {seed}"
    wrapper = render("stream_top.v.j2", version=fxp.__version__, source=source, **car)
    _remove(earlier)
    fxpm.save(out / "layer.fxpm", sub.spec, sub.arrays)
    write_atomic(out / f"{top}.v", verilog)
    write_atomic(out / f"{top}_top.v", wrapper)
    if car["sim_models"]:
        write_atomic(out / dp16kd.SIM_MODEL, dp16kd.sim_model())
    write_atomic(out / f"{top}.json", json.dumps(car, indent=2) + "\n")
    return car


def _buildable(model: fxpm.Model) -> str:
    """The layers a unit can build, with the kind that builds each (for an error that names the choice)."""
    names = [f"{x['name']} ({x['op']}: {ENGINES[x['op']]})" for x in model.layers if x["op"] in ENGINES]
    return ", ".join(names) if names else "none (units build dense and binary_dense layers)"


def _one_layer(model: fxpm.Model, name: str) -> fxpm.Model:
    """The sub-description holding only layer ``name``, its input taken as already quantized.

    Not the source layer verbatim: the input quantizer becomes the identity on raw integers (format
    ``s<W>.0`` / ``u<W>.0`` of the layer's input word, or ``binarize`` at 0.5 for bits), and an integer
    layer's ``input_format`` follows it (word and signedness kept; the binary point does not change
    integer arithmetic). Everything else, arrays included, is the source's.
    """
    idx = next((i for i, x in enumerate(model.layers) if x["name"] == name), None)
    if idx is None:
        raise FxpError(f"no layer {name!r} in the model; layers that units build: {_buildable(model)}")
    layer = model.layers[idx]
    width = model.shapes[idx - 1] if idx else tuple(model.spec["input"]["shape"])
    if layer["op"] not in ENGINES:
        raise FxpError(f"layer {name!r} is {layer['op']}; units build dense (mac) and binary_dense (xnor) layers: "
                       f"{_buildable(model)}")
    if len(width) != 1:
        raise FxpError(f"layer {name!r} takes {list(width)} input; units take flat vectors: add a flatten layer before it")
    if layer["op"] == "binary_dense":
        quant = {"kind": "binarize", "threshold": 0.5}
    else:
        fmt = Format.parse(layer["input_format"])
        quant = {"kind": "fixed", "format": str(Format(fmt.word_bits, 0, fmt.signed))}
        layer = dict(layer, input_format=quant["format"])
    keys = [layer[k] for k in ("weights", "bias", "threshold", "multiplier", "shift", "weight_zero_point") if layer.get(k)]
    spec = {"format": "fxpm", "version": 1, "name": f"{model.spec['name']}.{name}",
            "input": {"shape": [int(width[0])], "quantizer": quant}, "layers": [layer]}
    return fxpm.Model(spec, {k: model.arrays[k] for k in keys})
