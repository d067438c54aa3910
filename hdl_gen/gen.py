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
import shutil
from pathlib import Path

import numpy as np

import fxp
from fxp import fxpm
from fxp.errors import FxpError
from fxp.format import Format
from fxp.ops.base import ArrayField
from fxp.resources import render, write_atomic
from hdl_gen import dp16kd
from hdl_gen.boards import load_board
from hdl_gen.engines import ENGINES, build_unit, buildable, engine, op_named
from hdl_gen.unit_folder import check_identifier, read_sidecar, sim_sources


def random_layer(kind: str, mw: int, mh: int, seed: int) -> fxpm.Model:
    """A random one-layer description that the ``kind`` unit builds (see its ``random_layer``)."""
    return engine(kind).random_layer(mw, mh, seed)


MAX_SIZE = 1 << 16  # --mw, --mh of a random layer: larger is refused before anything is allocated


def describe_unit(kind: str, unit, top: str, layer: str, seed: int | None) -> dict:
    """What a unit folder says about its unit: the geometry comes from the unit itself."""
    in_width, out_width = unit.mw * unit.in_lane_width, unit.pe * unit.out_lane_width
    return {
        "fxp_version": fxp.__version__, "kind": kind, "top": top, "wrapper": f"{top}_top", "layer": layer,
        "description": "layer.fxpm",
        "mw": unit.mw, "mh": unit.mh, "pe": unit.pe, "simd": unit.simd, "nf": unit.nf, "sf": unit.sf, "seed": seed,
        # in_data: MW lanes; out_data: PE lanes; lane k at bits [k*width, (k+1)*width), two's complement
        # where signed (a lane narrower than 32 bits is sign- or zero-extended by whoever reads it)
        "in_width": in_width, "in_lanes": unit.mw, "in_lane_width": unit.in_lane_width,
        "in_lane_signed": unit.in_lane_signed, "in_words": -(-in_width // 32), "in_transfers": 1,
        "out_width": out_width, "out_lanes": unit.pe, "out_lane_width": unit.out_lane_width,
        "out_lane_signed": unit.out_lane_signed, "out_words": -(-out_width // 32),
        # the width of the running sum each lane keeps (XNOR: the popcount, 0..MW; MAC: acc_bits)
        "accumulator_bits": unit.accumulator_bits,
        "out_transfers": unit.nf, "cycles_per_output": unit.sf, "cycles_per_vector": unit.cycles_per_vector,
        # clock edges from the one accepting an input to the one raising its first output, no stalls
        "latency_cycles": unit.latency,
        # with a skid register on the output (--pipeline), in_ready does not depend on out_ready in the same cycle
        "in_ready_waits_for_out_ready": not unit.pipeline,
        "options": {o.name: getattr(unit, o.name) for o in unit.OPTIONS if getattr(unit, o.name) is not None},
        # Verilog the simulators need beside the unit (primitive models); synthesis has its own
        "sim_models": [dp16kd.SIM_MODEL] if unit.weights_in == "dp16kd" else [],
    }


# What a folder holds besides the unit's or network's own files: the folding report, results and build
# folders of fxp sim, and Yosys' folder where a bench synthesised it (synth).
_OTHER_OUTPUTS = ("sim_*.json", "sim_build_*", "replay_build", "amaranth.vcd", "folding.md", "board", "report.json",
                  "report.md", "fxp_board.v", "run_*.json", "run_build", "synth")


def _check_out(out: Path, force: bool) -> list[Path]:
    """Refuse an output folder that is a file, or that holds anything but an earlier unit (or it without
    ``force``); the paths of the earlier unit to remove."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FxpError(f"output {out} is a file or a link; give a folder for the unit")
    if not out.exists() or not any(out.iterdir()):
        return []
    try:
        earlier = read_sidecar(out)
    except FxpError:
        raise FxpError(f"output {out} holds files that are not a unit or network folder; give a new or empty "
                       "folder") from None
    if not force:
        raise FxpError(f"output {out} already holds unit {earlier['top']}; choose another output folder or "
                       "replace it (force=True, --force)")
    mine = [out / n for n in (*sim_sources(earlier), f"{earlier['top']}.json", earlier["description"])]
    mine += [p for pattern in _OTHER_OUTPUTS for p in out.glob(pattern)]
    others = sorted(p.name for p in out.iterdir() if p not in mine)
    if others:
        raise FxpError(f"output {out} holds other files besides unit {earlier['top']} ({', '.join(others[:3])}); "
                       "give a new or empty folder")
    return mine


def _remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def generate(kind: str | None, out: str | Path, *, mw: int | None = None, mh: int | None = None, pe: int = 1,
             simd: int = 1, seed: int = 0, model_path: str | Path | None = None, layer: str | None = None,
             top: str | None = None, options: dict | None = None, force: bool = False) -> dict:
    """Write a unit folder (see the module docstring); returns the sidecar.

    With ``model_path`` and ``layer`` the unit builds that layer (``kind`` may be None: the layer's op
    names its engine); without, a random ``mw`` x ``mh`` layer of ``kind``. Everything is checked and
    the Verilog emitted before anything is written; an existing unit folder is replaced only with
    ``force`` (its files and fxp sim's results go, so the folder never mixes two units).
    """
    from hdl_gen.verilog import emit

    # which arguments go together, said in fxp gen unit's flags (model_path is --from MODEL, layer --layer NAME)
    if kind is not None:
        engine(kind)
    if model_path is not None:
        if mw is not None or mh is not None:
            raise FxpError("--mw and --mh size a random layer (mw, mh); with --from the layer sets them: drop them")
        model = fxpm.load(model_path)
        if layer is None:
            raise FxpError(f"--from needs --layer: one of {buildable(model)}")
        sub = _one_layer(model, layer, kind)
    else:
        if kind is None:
            raise FxpError(f"give the unit kind ({' or '.join(ENGINES)}) for a random layer, or --from MODEL "
                           "--layer NAME")
        if layer is not None:
            raise FxpError("--layer picks a layer of --from MODEL; give --from too, or drop --layer")
        if mw is None:
            raise FxpError("give --mw and --mh (mw, mh: inputs and outputs of a random layer), or --from MODEL "
                           "--layer NAME")
        if mh is None:
            raise FxpError("give --mh (mh: outputs of a random layer), or --from MODEL --layer NAME")
        for name, v in (("mw", mw), ("mh", mh)):
            if not 1 <= v <= MAX_SIZE:
                raise FxpError(f"{name} must be in 1..{MAX_SIZE}, got {v}")
        sub, layer = random_layer(kind, mw, mh, seed), "layer"
    out = Path(out)
    earlier = _check_out(out, force)
    kind = op_named(sub, layer, kind).engine
    top = check_identifier(top or f"fxp_{kind}", "top")
    unit = build_unit(sub, layer, pe, simd, options)  # validates everything before anything is written
    sidecar = describe_unit(kind, unit, top, layer, seed if model_path is None else None)
    verilog = emit(unit, top)
    source = f"layer {layer} of {Path(model_path).name}" if model_path is not None else f"random seed {seed}"
    wrapper = render("stream_top.v.j2", version=fxp.__version__, source=source, **sidecar)
    _write_folder(out, earlier, sidecar, sub, verilog, wrapper)
    return sidecar


def _write_folder(out: Path, earlier: list[Path], sidecar: dict, description: fxpm.Model, verilog: str, wrapper: str,
                  extra: dict[str, str] | None = None, plans: dict | None = None) -> None:
    """Replace the earlier folder's files with a unit's or network's: description, Verilog, wrapper,
    primitive models, ``extra`` files, Amaranth build ``plans`` (each into its subfolder), and the sidecar
    last (a folder without one is not taken for done)."""
    _remove(earlier)
    fxpm.save(out / sidecar["description"], description.spec, description.arrays)
    write_atomic(out / f"{sidecar['top']}.v", verilog)
    write_atomic(out / f"{sidecar['wrapper']}.v", wrapper)
    if sidecar["sim_models"]:
        write_atomic(out / dp16kd.SIM_MODEL, dp16kd.sim_model())
    for name, text in (extra or {}).items():
        write_atomic(out / name, text)
    for name, build_plan in (plans or {}).items():
        build_plan.extract(out / name)
    write_atomic(out / f"{sidecar['top']}.json", json.dumps(sidecar, indent=2) + "\n")


def _one_layer(model: fxpm.Model, name: str, kind: str | None) -> fxpm.Model:
    """The sub-description holding only layer ``name`` (which a unit, of ``kind`` if given, must build), its
    input taken as already quantized.

    Not the source layer verbatim: the input quantizer becomes the identity on raw integers (format
    ``s<W>.0`` / ``u<W>.0`` of the layer's input word, or ``binarize`` at 0.5 for bits), and an integer
    layer's ``input_format`` follows it (word and signedness kept; the binary point does not change
    integer arithmetic). Everything else, arrays included, is the source's.
    """
    op = op_named(model, name, kind)
    if op.window is not None:
        raise FxpError(f"layer {name!r} is {op.op}: its engine computes one window at a time behind a sliding window; "
                       "build the whole model (fxp gen model)")
    if len(op.in_shape) != 1:
        raise FxpError(f"layer {name!r} takes {list(op.in_shape)} input; units take flat vectors: add a flatten "
                       "layer before it")
    layer, fmt = op.layer, op.incoming.format
    if fmt is None:  # bits
        quant = {"kind": "binarize", "threshold": 0.5}
    else:
        quant = {"kind": "fixed", "format": str(Format(fmt.word_bits, 0, fmt.signed))}
        layer = dict(layer, input_format=quant["format"])
    spec = {"format": "fxpm", "version": 1, "name": f"{model.spec['name']}.{name}",
            "input": {"shape": [int(op.in_shape[0])], "quantizer": quant}, "layers": [layer]}
    arrays = [layer[f] for f, declared in type(op).fields.items() if isinstance(declared, ArrayField) and layer.get(f)]
    return fxpm.Model(spec, {k: model.arrays[k] for k in arrays})


def generate_network(model_path: str | Path, out: str | Path, *, levels: int, dataset: str | None = None,
                     folding: str | Path | None = None, cycles: int | None = None, board: str | None = None,
                     top: str = "fxp_network", options: dict | None = None, baud: int | None = None,
                     clock_hz: float | None = None, force: bool = False) -> dict:
    """Write a network folder: the accelerator of a whole model (:mod:`hdl_gen.network`); returns the sidecar.

    ``levels``: the largest raw pixel value of the data it takes (``dataset``, recorded for fxp sim).
    The folding comes from a file (``folding``: a folding JSON or a network sidecar), is chosen for
    ``cycles`` per frame, or else is the fastest that fits ``board``'s resources by the units' estimates
    (:func:`hdl_gen.folding.fold_to_fit`), or else what the input or a sliding window needs anyway (one
    pixel a cycle). With ``board``, the folder also holds the board top on the board's pins
    (:mod:`hdl_gen.board_build`), its serial port at ``baud`` (115200 by default), its clock the board's
oscillator or, with ``clock_hz``, a PLL's (:mod:`hdl_gen.pll`). Everything is checked and the Verilog emitted before anything is
    written; an earlier folder is replaced only with ``force``.
    """
    from hdl_gen import folding as folds
    from hdl_gen.network import Network, plan
    from hdl_gen.verilog import emit

    model = fxpm.load(model_path)
    stages, layers, fixed = plan(model, options)
    # a first layer that reads windows takes whole pixels: one (C-channel) pixel a transfer
    per_word = stages[0].channels if stages[0].op.window is not None else None
    pixels = int(np.prod(model.spec["input"]["shape"]))
    if folding is not None and cycles is not None:
        raise FxpError("--folding and --cycles each set the folding; give one of them")
    target = None if board is None else load_board(board)
    if target is not None:  # a clock the board cannot make is refused before any work
        from hdl_gen.pll import clock_of

        clock_of(target, clock_hz)
    if folding is not None:
        chosen = folds.from_file(folding, layers, pixels, fixed)
    elif cycles is None and target is not None:  # the board's resources set the folding
        weights_in = (options or {}).get("weights_in") or "logic"
        chosen = folds.fold_to_fit(layers, pixels, target.capacity(), target.description, fixed, per_word, weights_in)
    else:
        chosen = folds.fold(layers, pixels, cycles or max([pixels, *(c for _, c in fixed)]), fixed, per_word)
    if target is not None and (folding is not None or cycles is not None):  # a folding given by hand
        _check_estimate(chosen, target, layers, pixels, fixed, per_word, (options or {}).get("weights_in") or "logic")
    top = check_identifier(top, "top")
    out = Path(out)
    earlier = _check_out(out, force)
    net = Network(model, chosen, levels, options)
    verilog = emit(net, top)
    sidecar = describe_network(net, top, model_path, dataset)
    plans, extra = {}, {"folding.md": f"# Folding of {model.spec['name']}\n\n" + chosen.markdown()}
    if board is not None:  # the board top on the board's pins, its files made by the board's platform
        from hdl_gen.board_build import BAUD, BOARD_DIR, BOARD_VERILOG, board_plan, board_verilog

        plans[BOARD_DIR], sidecar["board"] = board_plan(Network(model, chosen, levels, options), target, baud or BAUD,
                                                        clock_hz)
        extra[BOARD_VERILOG] = board_verilog(Network(model, chosen, levels, options), sidecar["board"])
    wrapper = render("network_top.v.j2", version=fxp.__version__, source=Path(model_path).name, **sidecar)
    _write_folder(out, earlier, sidecar, model, verilog, wrapper, extra, plans)
    return sidecar


def _check_estimate(chosen, board, layers, pixels: int, fixed, per_word, weights_in: str) -> None:
    """Refuse, before anything is written, a folding whose estimated DSPs or block RAM bits already
    exceed the board's, naming the folding ``--board`` alone would choose. (LUT4 are left to
    synthesis: their estimate counts the engines only, and a design near the edge may still fit.)"""
    from hdl_gen import folding as folds

    used, have = folds.usage(chosen, weights_in), board.capacity()
    over = [k for k in ("dsp", "bram_bits") if used[k] > have[k]]
    if not over:
        return
    k = over[0]
    fit = folds.fold_to_fit(layers, pixels, have, board.description, fixed, per_word, weights_in)
    raise FxpError(f"at {chosen.cycles_per_frame} cycles per frame the network needs {used[k]:,} "
                   f"{folds.RESOURCES[k]} ({folds._heaviest(chosen, k, weights_in)} the most), the {board.description} "
                   f"has {have[k]:,}; fold it slower (--cycles {fit.cycles_per_frame} fits by the estimates: drop "
                   "--cycles and --folding to get it)")


def describe_network(net, top: str, model_path, dataset: str | None) -> dict:
    """What a network folder says about its accelerator (the packers, fxp sim and the replay harness read it)."""
    layout = net.o.signature.members["payload"].shape
    per_word, pw = net.folding.pixels_per_word, net.pixel_bits
    in_width, out_width, index_bits = per_word * pw, layout.size, layout["index"].shape.width
    options = {o.name: getattr(u, o.name) for u in net.units.values() for o in u.OPTIONS if getattr(u, o.name) is not None}
    return {
        "fxp_version": fxp.__version__, "kind": "network", "top": top, "wrapper": f"{top}_top",
        "description": "model.fxpm", "model": net.model.spec["name"], "dataset": dataset, "levels": net.levels,
        # in_data: pixels_per_word raw pixels (0..levels), lane k at bits [k*w, (k+1)*w), in (C, H, W) order
        "pixels": net.folding.pixels, "pixels_per_word": per_word, "in_transfers": net.folding.input_cycles,
        "in_width": in_width, "in_lanes": per_word, "in_lane_width": pw, "in_lane_signed": False,
        "in_words": -(-in_width // 32),
        # out_data, one transfer per frame: the class index in the low index_bits, then classes scores
        "classes": net.classes, "index_bits": index_bits, "out_width": out_width, "out_lane_width": net._score.width,
        "out_lane_signed": net._score.signed, "out_words": -(-out_width // 32), "out_transfers": 1,
        "cycles_per_frame": net.cycles_per_frame, "cycles_per_vector": net.cycles_per_frame,
        "folding": net.folding.to_json(), "layers": net.folding.table(), "options": options,
        "sim_models": [dp16kd.SIM_MODEL] if any(u.weights_in == "dp16kd" for u in net.units.values()) else [],
    }
