"""The ``fxp`` command. Each subcommand is a thin layer over a library function.

One policy for every subcommand:

- Every option is checked, and every input path looked at, before any work starts (a training run
  does not discover a bad ``--out`` after an hour). A bad value is one line on stderr (``fxp: error:
  ...``, naming the problem and the fix) and exit status 2; nothing is written.
- A command writes only into its output (``--out``, ``--json``) and refuses to replace an earlier
  result there without ``--force``. The exception is ``fxp sim``: it records its latest result in
  the unit folder it simulates (``sim_<simulator>.json``), replacing the previous record of the same
  simulator, as a log does.

Library code raises :class:`fxp.FxpError`; here it becomes that one line.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from pathlib import Path

import fxp
from fxp.errors import FxpError


def _int_in(lo: int, hi: int):
    """An argparse type: a whole number in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (expected {lo}..{hi})") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v

    return parse


def _float_in(lo: float, hi: float, hi_open: bool = False, lo_open: bool = False):
    """An argparse type: a finite number in ``[lo, hi]`` (``[lo, hi)`` with ``hi_open``, ``(lo, hi]`` with
    ``lo_open``)."""
    span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (expected {span})") from None
        if not math.isfinite(v) or v < lo or v > hi or (hi_open and v == hi) or (lo_open and v == lo):
            raise argparse.ArgumentTypeError(f"{text} is outside {span}")
        return v

    return parse


def _within(bounds):
    """An argparse type: a number within a library's :class:`fxp.layers.Bounds` (the range it checks itself)."""
    if bounds.whole:
        return _int_in(bounds.lo, bounds.hi)
    return _float_in(bounds.lo, bounds.hi, hi_open=bounds.hi_open, lo_open=bounds.lo_open)


def _bits_list(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of word widths, e.g. 4,8,16") \
            from None
    return bits


def _existing(path: str, what: str, folder: bool | None = None) -> Path:
    """``path`` if it exists (and is a folder, or a file, where ``folder`` says which), else an error."""
    p = Path(path)
    if not p.exists():
        raise FxpError(f"{what} {p} does not exist")
    if folder is True and not p.is_dir():
        raise FxpError(f"{what} {p} is a file; give a folder")
    if folder is False and p.is_dir():
        raise FxpError(f"{what} {p} is a folder; give a file")
    return p


def _check_json_out(path: str | None, force: bool) -> None:
    """``--json FILE``: a file that may be written (not a folder; replaced only with ``--force``)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise FxpError(f"--json {p} is a folder; give the name of a file to write the record into")
    if p.exists() and not force:
        raise FxpError(f"--json {p} exists; choose another file or pass --force to replace it")
    if p.parent.exists() and not p.parent.is_dir():
        raise FxpError(f"--json {p}: {p.parent} is a file; give a path in a folder")


# --- subcommands --------------------------------------------------------------------------------------
def _cmd_report(args: argparse.Namespace) -> int:
    from fxp import report

    out = Path(args.out)
    # the options given; the others take the library's defaults (the run's own, with RUN). report_run
    # refuses --epochs and --overflow, which only the report without RUN uses.
    given = {k: getattr(args, k) for k in ("seed", "rounding", "epochs", "overflow") if getattr(args, k) is not None}
    if args.run is not None:
        rec = report.report_run(args.run, out, bits=args.bits, progress=not args.quiet, force=args.force, **given)
        print(f"{rec['model']} on {rec['dataset']} ({rec['summary']['mode']} run): "
              f"test accuracy {100 * rec['checkpoint_accuracy']:.2f} %")
    else:
        rec = report.run_report(out, bits=args.bits, progress=not args.quiet, force=args.force, **given)
        print(f"{rec['model']} on {rec['dataset']}: float accuracy {100 * rec['float_accuracy']:.2f} %")
    if rec["sweep"]:
        print(f"{'word bits':>9}  {'accuracy':>8}")
        for row in rec["sweep"]:
            print(f"{row['word_bits']:>9}  {100 * row['accuracy']:>7.2f}%")
    written = ["report.md", "report.json"] + (["accuracy_vs_bits.png"] if rec["sweep"] else [])
    print(f"wrote {', '.join(str(out / n) for n in written)}")
    return 0


def _config(args: argparse.Namespace):
    from fxp.layers import FxConfig

    return FxConfig(
        mode=args.mode, act_bits=args.act_bits, grad_bits=args.grad_bits, update_bits=args.update_bits,
        weight_bits=args.weight_bits, acc_bits=args.acc_bits, acc_overflow=args.acc_overflow, rounding=args.rounding,
        update_rounding=args.update_rounding, max_overflow_rate=args.max_overflow_rate,
        update_interval=args.update_interval, exact=args.exact,
    )


def _recipe(args: argparse.Namespace):
    from fxp.train import Recipe

    return Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                  weight_decay=args.weight_decay, seed=args.seed, limit_train=args.limit_train,
                  optimizer=args.optimizer, l1=args.l1, group_in=args.group_in, group_out=args.group_out,
                  tsrelu=args.tsrelu, gate_l1=args.gate_l1, depth_l1=args.depth_l1,
                  binary=args.binary_reg)


def _check_training(args: argparse.Namespace, marker: str, holds: str):
    """Everything a training command needs, checked before any data is loaded: (config, recipe)."""
    from fxp.datasets import check_dataset
    from fxp.models import load_spec
    from fxp.resources import check_out_folder
    from fxp.train import check_recipe

    cfg, recipe = _config(args), _recipe(args)
    check_recipe(load_spec(args.model), cfg, recipe)
    check_dataset(args.dataset)
    check_out_folder(args.out, args.force, marker, holds)
    return cfg, recipe


def _cmd_train(args: argparse.Namespace) -> int:
    from fxp.datasets import load
    from fxp.train import finish_distributed, init_distributed, run_train

    cfg, recipe = _check_training(args, "metrics.json", "a training run")
    rank, world = init_distributed()
    try:
        data = load(args.dataset, seed=args.seed)
        m = run_train(args.model, data, cfg, recipe, args.out, baseline=args.baseline, progress=not args.quiet,
                      force=args.force)
    finally:
        finish_distributed()
    if rank == 0:
        line = f"{m['model']} on {m['dataset']}, {m['mode']} mode: test accuracy {100 * m['test_accuracy']:.2f} %"
        if "float_baseline" in m:
            line += f" (float baseline {100 * m['float_baseline']['test_accuracy']:.2f} %)"
        print(line + (f", {world} processes" if world > 1 else ""))
        print(f"wrote {args.out}/checkpoint.pt, metrics.json, curves.png, weights.png")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from fxp.datasets import load
    from fxp.sweep import check_sweep, run_sweep

    cfg, recipe = _check_training(args, "sweep.json", "a sweep")
    bits, vary = list(args.bits), args.vary.split(",")
    check_sweep(cfg, bits, vary, args.tolerance)
    data = load(args.dataset, seed=args.seed)
    rec = run_sweep(args.model, data, cfg, recipe, bits, vary, args.out, args.tolerance, progress=not args.quiet,
                    force=args.force)
    print((Path(args.out) / "sweep.md").read_text())
    print(f"smallest within {args.tolerance} point(s): {rec['smallest_within_tolerance']}")
    return 0


def _per_layer(bounds, what: str, whole: bool = False):
    """An argparse type: one number for every layer (``0.9``) or some layers' own (``fc1=0.92,fc2=0.9``),
    each within ``bounds``; the layer names are checked against the model later."""

    def parse(text: str) -> float | dict[str, float]:
        def number(v: str, where: str) -> float:
            try:
                x = int(v) if whole else float(v)
            except ValueError:
                example = "5 or conv1=8,fc1=5" if whole else "0.9 or fc1=0.92,fc2=0.9"
                raise argparse.ArgumentTypeError(f"{where}{v!r} is not a {'whole ' if whole else ''}number; give "
                                                 f"{what} as {example}") from None
            if x not in bounds:
                raise argparse.ArgumentTypeError(f"{where}{what} {v} is outside {bounds}")
            return x

        if "=" not in text:
            return number(text, "")
        out = {}
        for item in text.split(","):
            name, eq, v = item.partition("=")
            if not eq or not name.strip():
                raise argparse.ArgumentTypeError(f"{item!r} is not layer=value; give e.g. fc1=0.92,fc2=0.9")
            out[name.strip()] = number(v.strip(), f"{name.strip()}: ")
        return out

    return parse


def _cmd_compress(args: argparse.Namespace) -> int:
    from fxp.compress.pipeline import PruneOptions, compress

    _existing(args.run, "run")
    opts = PruneOptions(sparsity=args.prune, quality=args.quality, scope=args.scope, stages=args.stages,
                        dynamic=args.dynamic, retrain_epochs=args.retrain_epochs, lr=args.lr,
                        weight_decay=args.weight_decay, neuron_threshold=args.neurons, l1=args.l1, group_in=args.group_in, group_out=args.group_out,
                        share_bits=args.share_bits, share_init=args.share_init, share_epochs=args.share_epochs,
                        share_rounds=args.share_rounds, share_free_epochs=args.share_free_epochs,
                        share_restart=args.share_restart, seed=args.seed,
                        huffman=args.huffman, architecture=args.architecture, tsrelu=args.tsrelu, gate_l1=args.gate_l1, depth_l1=args.depth_l1,
                        gate_epochs=args.gate_epochs, uniform_bits=args.uniform, uniform_scheme=args.uniform_scheme,
                        uniform_per_channel=not args.uniform_per_tensor, range_reg=args.range_reg)
    rec = compress(args.run, args.out, opts, progress=not args.quiet, force=args.force)
    s = rec["summary"]
    print(f"{rec['model']} on {rec['dataset']}: {s['weights_kept']:,} of {s['weights']:,} weights kept "
          f"({s['compression_rate']:.1f}x), accuracy {100 * s['accuracy']:.2f} % (reference "
          f"{100 * s['reference_accuracy']:.2f} %), weights {s['final_bytes']:,} B against {s['dense_bytes']:,} B "
          f"dense ({s['size_rate_float32']:.1f}x below the float32 network)")
    if "uniform" in rec:
        u = rec["uniform"]
        print(f"uniform {u['bits']}-bit {u['scheme']}: accuracy {100 * u['accuracy_before']:.2f} % before, "
              f"{100 * u['accuracy_quantized']:.2f} % on the grid without retraining, {100 * u['accuracy_after']:.2f} % "
              "after")
    print(f"wrote {args.out}/checkpoint.pt, metrics.json, report.md, report.json, params.png, weights.png, "
          "accuracy_vs_sparsity.png, bytes.png" + (", codebooks.png, accuracy_vs_bits.png, weights.fxpz" if args.share_bits else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fxp.datasets import check_dataset
    from fxp.export import export
    from fxp.train import read_run_metrics, run_dataset

    _existing(args.run, "run")
    if args.dataset is not None:
        check_dataset(args.dataset)

    def calibration():  # loaded only if the export needs it (per-channel scales)
        from fxp.datasets import load

        return load(args.dataset or run_dataset(read_run_metrics(args.run)), seed=args.seed).x_train[: args.calibrate]

    model = export(args.run, args.out, scales=args.scales, calibration=calibration, weights=args.weights,
                   force=args.force)
    kinds = ", ".join(f"{layer['name']} ({layer['op']})" for layer in model.layers)
    print(f"wrote {args.out}: {len(model.layers)} layers: {kinds}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from fxp.datasets import check_dataset, load
    from sim.predict import run_predict

    _existing(args.model, "integer model description", folder=True)
    check_dataset(args.dataset)
    if args.run is not None:
        _existing(args.run, "run")
    _check_json_out(args.json, args.force)
    data = load(args.dataset, seed=args.seed)
    rec = run_predict(args.model, data, run=args.run, limit=args.limit)
    if args.json:
        from fxp.resources import write_atomic

        write_atomic(args.json, json.dumps(rec, indent=2) + "\n")
    rows = [("golden model (integer description)", rec["golden_accuracy"])]
    if "fake_quantized_accuracy" in rec:
        kind = "float" if rec["checkpoint_mode"] == "float" else f"fake-quantized, {rec['checkpoint_mode']}"
        rows.append((f"PyTorch checkpoint ({kind})", rec["fake_quantized_accuracy"]))
    if rec.get("float_accuracy") is not None:
        rows.append(("PyTorch float baseline", rec["float_accuracy"]))
    print(f"{rec['dataset']}, {rec['images']} test images")
    for name, acc in rows:
        print(f"  {name:38} {100 * acc:6.2f} %")
    print(f"  integer outputs golden vs PyTorch integer path: {rec['integer_mismatches']} mismatched of "
          f"{rec['integer_outputs_compared']}")
    return 0 if rec["integer_mismatches"] == 0 else 1


def _cmd_gen(args: argparse.Namespace) -> int:
    from hdl_gen.gen import generate

    if args.from_model is not None:  # generate checks which flags go together, in the flags' words
        _existing(args.from_model, "--from", folder=True)
    sidecar = generate(args.kind, args.out, mw=args.mw, mh=args.mh, pe=args.pe, simd=args.simd, seed=args.seed,
                       model_path=args.from_model, layer=args.layer, top=args.top, options=_unit_options(args),
                       force=args.force)
    print(f"wrote {args.out}: {sidecar['top']}.v, {sidecar['wrapper']}.v, {sidecar['top']}.json, layer.fxpm"
          f"{''.join(', ' + name for name in sidecar['sim_models'])} — {sidecar['kind']} unit, "
          f"MW={sidecar['mw']} MH={sidecar['mh']} PE={sidecar['pe']} SIMD={sidecar['simd']}, "
          f"{sidecar['cycles_per_vector']} cycles per vector")
    return 0


def _unit_options(args: argparse.Namespace) -> dict:
    """The options of the hardware units asked for on the command line (the flags of _add_unit_options)."""
    from hdl_gen.engines import all_options

    given = {o.name: getattr(args, o.name) for o, _ in all_options()}
    return {name: v for name, v in given.items() if v is not None and v is not False}


def _cmd_gen_model(args: argparse.Namespace) -> int:
    from fxp.datasets import levels_of
    from hdl_gen.gen import generate_network

    _existing(args.model, "integer model description", folder=True)
    if args.baud is not None and args.board is None:
        raise FxpError("--baud sets the board top's serial port; give --board NAME too, or drop --baud")
    if args.folding is not None:
        _existing(args.folding, "--folding", folder=False)
    cycles = args.cycles
    if args.fps is not None:  # --fps is the command line's: a target of cycles per frame at --clock-mhz
        given = [flag for flag, v in (("--folding", args.folding), ("--cycles", args.cycles)) if v is not None]
        if given:
            raise FxpError(f"{' and '.join(given)} and --fps each set the folding; give one of them")
        if args.clock_mhz is not None:
            clock_mhz = args.clock_mhz
        else:  # the board's oscillator, else a round 100 MHz
            from hdl_gen.boards import load_board

            clock_mhz = load_board(args.board).clock_mhz if args.board else 100.0
        cycles = int(clock_mhz * 1e6 // args.fps)
        if cycles < 1:
            raise FxpError(f"--fps {args.fps} at {clock_mhz:g} MHz leaves less than a cycle per frame; lower --fps "
                           "or raise --clock-mhz")
    sidecar = generate_network(args.model, args.out, levels=levels_of(args.dataset), dataset=args.dataset,
                               folding=args.folding, cycles=cycles, board=args.board, top=args.top,
                               options=_unit_options(args), baud=args.baud,
                               clock_hz=None if args.clock_mhz is None or args.board is None else args.clock_mhz * 1e6,
                               force=args.force)
    print((Path(args.out) / "folding.md").read_text().rstrip())
    print(f"wrote {args.out}: {sidecar['top']}.v, {sidecar['wrapper']}.v, {sidecar['top']}.json, model.fxpm, folding.md"
          f"{''.join(', ' + name for name in sidecar['sim_models'])}")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from sim.run import run_unit_sim

    _existing(args.dir, "unit folder", folder=True)
    if args.dataset is not None:
        from fxp.datasets import check_dataset

        check_dataset(args.dataset)
    if args.uart:
        return _sim_uart(args)
    rec = run_unit_sim(args.dir, args.simulator, args.vectors, args.seed, args.waves, args.harness, args.gap,
                       args.stall, args.dataset)
    rate = f", {rec['vectors_per_second']:.0f} vectors/s" if rec["vectors_per_second"] else ""
    on = rec["simulator"] + (" (C++ harness)" if args.harness == "cpp" else "")
    if rec.get("kind") == "network":
        hw = rec["hardware_accuracy"]
        measured = rec.get("cycles_per_frame_measured")
        print(f"{rec['unit']} on {on}: {rec['images']} {rec['dataset']} test images, {rec['mismatches']} mismatched "
              f"outputs; accuracy: hardware {'—' if hw is None else f'{100 * hw:.2f} %'}, golden "
              f"{100 * rec['golden_accuracy']:.2f} %; cycles per frame: predicted {rec['cycles_per_frame_predicted']}"
              f"{'' if measured is None else f', measured {measured:.1f}'}{rate.replace('vectors', 'frames')}")
    else:
        print(f"{rec['unit']} on {on}: {rec['vectors']} vectors, {rec['output_words']} output words, "
              f"{rec['mismatches']} mismatches{rate}")
    if rec["mismatches"]:
        f = rec["first_mismatch"]
        print(f"first differing vector: {f['vector']} (output transfer {f['output_transfer']}, outputs "
              f"{f['outputs'][0]}..{f['outputs'][-1]}): expected {f['expected']}, got word {f['got_word']}")
        return 1
    return 0


def _sim_uart(args: argparse.Namespace) -> int:
    """fxp sim DIR --uart: the board top under cocotb, real serial frames on its pins (sim.board_uart)."""
    from sim.board_uart import run_board_uart

    if args.simulator == "amaranth" or args.harness == "cpp":
        raise FxpError("--uart runs the board top under cocotb: give --simulator verilator or icarus, without "
                       "--harness cpp")
    rec = run_board_uart(args.dir, args.simulator, args.vectors, args.seed, dataset=args.dataset, waves=args.waves)
    hw = rec["hardware_accuracy"]
    print(f"{rec['top']} on {rec['simulator']}, serial frames at {rec['baud']} Bd: {rec['images']} {rec['dataset']} "
          f"test images, {rec['mismatches']} replies differ from the golden model's; accuracy: hardware "
          f"{'—' if hw is None else f'{100 * hw:.2f} %'}, golden "
          f"{100 * rec['golden_accuracy']:.2f} %")
    return 0 if rec["passed"] else 1


def _cmd_build(args: argparse.Namespace) -> int:
    from hdl_gen.board_build import build

    _existing(args.dir, "board folder", folder=True)
    rec = build(args.dir, timeout=args.timeout, progress=not args.quiet)
    print((Path(args.dir) / "report.md").read_text().rstrip())
    print(f"wrote {args.dir}/{rec['bitstream']}, report.json, report.md")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from fxp.resources import write_atomic
    from sim.serial_host import run

    if (args.sim is None) == (args.port is None):
        raise FxpError("give the board's serial port (--port DEV) or a board folder to simulate (--sim DIR), one of them")
    if args.sim is not None and args.folder is not None:
        raise FxpError("--sim DIR is the board folder already; drop --folder")
    folder = args.sim if args.sim is not None else args.folder
    if folder is not None:
        _existing(folder, "board folder", folder=True)
    if args.dataset is not None:
        from fxp.datasets import check_dataset

        check_dataset(args.dataset)
    rec = run(folder, args.port, args.dataset, args.images, scores=args.scores, baud=args.baud, timeout=args.timeout,
              progress=not args.quiet)
    shown = " ".join(map(str, rec["predictions"][:20])) + (" ..." if rec["images"] > 20 else "")
    where = "the simulated board (Verilator behind a pseudo-terminal)" if args.sim else args.port
    print(f"predictions: {shown}")
    line = (f"{rec['images']} {rec['dataset']} test images over {where} at {rec['baud']} Bd: accuracy "
            f"{100 * rec['accuracy']:.2f} %, {rec['frames_per_second']:.1f} frames/s")
    if "mismatches" in rec:
        line += f"; golden {100 * rec['golden_accuracy']:.2f} %, {rec['mismatches']} replies differ from the golden model's"
    print(line)
    if folder is not None:
        out = Path(folder) / f"run_{'sim' if args.sim else 'port'}.json"
        write_atomic(out, json.dumps(rec, indent=2) + "\n")
        print(f"wrote {out}")
    return 1 if rec.get("mismatches") else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fxp.demo import run_demo

    rec = run_demo(args.out, board=args.board, epochs=args.epochs, seed=args.seed, bitstream=not args.no_build,
                   force=args.force, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text().split("![accuracy]")[0].rstrip())  # the accuracy part
    if "build" in rec:
        b = rec["build"]
        print(f"\nbitstream {args.out}/hw/{b['bitstream']}: Fmax {b['fmax_mhz']:.1f} MHz (clock {b['clock_mhz']:g} MHz), "
              f"{b['frames_per_second_at_clock']:,.0f} frames/s at the clock")
    print(f"wrote {args.out}/report.html, report.md, report.json (in {sum(rec['seconds'].values()):.0f} s)")
    return 0


def _cmd_boards(args: argparse.Namespace) -> int:
    from hdl_gen.boards import boards

    found = boards()
    if args.json:
        print(json.dumps({name: board.to_json() for name, board in found.items()}, indent=2))
        return 0
    for name, board in found.items():
        res = ", ".join(f"{k} {v}" for k, v in board.resources.items())
        uart = " ".join(f"{sig} {pin}" for sig, pin in board.uart.items()) if board.uart else "none"
        # a family without nextpnr (Xilinx 7-series) has no open bitstream flow in fxp: say so, plainly
        flow = board.no_open_flow or f"{board.family.nextpnr} {board.nextpnr_device}"
        print(f"{name:12} {board.description:32} {board.device} {board.package}, "
              f"{board.clock_mhz:g} MHz ({board.default_clk})  {res}\n"
              f"{'':12} platform {board.amaranth_platform}; UART {uart}; "
              f"synth_{board.family.name} {board.synth_opts}; {flow}")
    return 0


# --- the parser ---------------------------------------------------------------------------------------
class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default (but not ``None`` or ``False``, which say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``fxp: error: ...``) and exit status 2, like FxpError."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"fxp: error: {message} (see {self.prog} --help)\n")


def _seed(p: argparse.ArgumentParser, what: str, default: int | None = 0) -> None:
    from fxp.train import SEED

    p.add_argument("--seed", type=_within(SEED), default=default, help=what)


def _force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} already in the output")


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_regularizer_args(p: argparse.ArgumentParser) -> None:
    from fxp.train import REGULARIZER

    strength = _within(REGULARIZER)
    p.add_argument("--l1", type=strength, default=0.0, help="L1 regularizer on the weights: strength per weight")
    p.add_argument("--group-in", type=strength, default=0.0,
                   help="group lasso on each hidden neuron's incoming weights (li): strength per neuron")
    p.add_argument("--group-out", type=strength, default=0.0,
                   help="group lasso on each hidden neuron's outgoing weights (lo): strength per neuron")
    p.add_argument("--tsrelu", type=strength, default=0.0,
                   help="architecture learning: every ReLU becomes a tsReLU with neuron and layer gates, pushed to "
                        "0 or 1 by w(1-w) and d(1-d) with this strength")
    p.add_argument("--gate-l1", type=strength, default=0.0,
                   help="with tsReLU gates: pull the neuron gates towards 0 (fewer neurons; keep it below --tsrelu, "
                        "docs/compression.md says why)")
    p.add_argument("--depth-l1", type=strength, default=0.0,
                   help="with tsReLU gates: pull the layers' nonlinearity gates towards 0 (fewer nonlinearities)")


def _add_training_args(p: argparse.ArgumentParser) -> None:
    from fxp import layers, train

    defaults, recipe = layers.FxConfig(), train.Recipe()
    bits = _within(layers.WORD_BITS)
    from fxp.models import BUILTIN

    p.add_argument("--model", default="digits_mlp", help=f"{', '.join(BUILTIN)}, or a model TOML file")
    p.add_argument("--dataset", default="digits", help="digits, fashion-mnist, or an MNIST-format IDX folder")
    p.add_argument("--mode", default=defaults.mode, choices=("float", "qat", "fixed"),
                   help="float; qat (float master weights, quantized forward); fixed (everything fixed point)")
    p.add_argument("--act-bits", type=bits, default=defaults.act_bits, help="word of every activation, sign included")
    p.add_argument("--grad-bits", type=bits, default=defaults.grad_bits,
                   help="word of every back-propagated gradient (fixed mode)")
    p.add_argument("--update-bits", type=bits, default=defaults.update_bits,
                   help="word of every stored parameter and its update (fixed mode)")
    p.add_argument("--weight-bits", type=bits, default=defaults.weight_bits,
                   help="word of the forward weights (qat mode)")
    p.add_argument("--acc-bits", type=bits, default=defaults.acc_bits, help="accumulator word of every compute layer")
    p.add_argument("--acc-overflow", default=defaults.acc_overflow, choices=fxp.OVERFLOW,
                   help="what an accumulator does when it overflows")
    p.add_argument("--rounding", default=defaults.rounding, choices=fxp.ROUNDING,
                   help="rounding of activations and gradients")
    p.add_argument("--update-rounding", default=defaults.update_rounding, choices=fxp.ROUNDING,
                   help="rounding of parameter updates (fixed mode; stochastic keeps small updates alive)")
    p.add_argument("--max-overflow-rate", type=_within(layers.OVERFLOW_RATE), default=defaults.max_overflow_rate,
                   help="share of a tensor's values allowed to overflow before its format gains an integer bit")
    p.add_argument("--update-interval", type=_within(layers.UPDATE_INTERVAL), default=defaults.update_interval,
                   help="batches between revisions of the dynamic scales")
    p.add_argument("--exact", action="store_true", help="accumulate in float64 (exact) instead of float32")
    p.add_argument("--epochs", type=_within(train.EPOCHS), default=recipe.epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=_within(train.BATCH_SIZE), default=recipe.batch_size,
                   help="images per optimizer step")
    p.add_argument("--lr", type=_within(train.LR), default=recipe.lr, help="learning rate (cosine schedule)")
    p.add_argument("--momentum", type=_within(train.MOMENTUM), default=recipe.momentum, help="SGD momentum")
    p.add_argument("--optimizer", default=recipe.optimizer, choices=train.OPTIMIZERS,
                   help="sgd (with momentum) or adam")
    p.add_argument("--weight-decay", type=_within(train.WEIGHT_DECAY), default=recipe.weight_decay,
                   help="L2 weight decay")
    p.add_argument("--limit-train", type=_within(train.LIMIT_TRAIN), default=recipe.limit_train,
                   help="train on the first N training images only (default: all)")
    _add_regularizer_args(p)
    p.add_argument("--binary-reg", type=_within(train.REGULARIZER), default=0.0,
                   help="binarized models: W^2(1-W^2) on the latent weights, which then train without the "
                        "straight-through estimator and are rounded to ±1 at the end")
    _seed(p, "seed of the initialization, the shuffling and the digits split")
    _quiet(p)


def _add_unit_options(p: argparse.ArgumentParser) -> None:
    """One flag per option of the hardware units (their tables in hdl_gen/options.py), saying which take it."""
    from hdl_gen.engines import ENGINES, all_options

    for option, kinds in all_options():
        units = "" if len(kinds) == len(ENGINES) else f" [{' and '.join(kinds)} only]"
        shown = "" if option.default in (None, False) else f" (default: {option.default})"
        text = option.help + units + shown
        if option.type is bool:
            p.add_argument(option.flag, action="store_true", help=text)
        elif option.type is str:
            p.add_argument(option.flag, default=None, choices=option.choices, help=text)
        else:
            p.add_argument(option.flag, type=_int_in(option.lo, option.hi), default=None, metavar="N", help=text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fxp", description="From PyTorch to bit-exact FPGA accelerators.")
    p.add_argument("--version", action="version", version=f"fxp {fxp.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    from fxp import report, train

    # without RUN, what report.run_report does by default
    mlp = {name: param.default for name, param in inspect.signature(report.run_report).parameters.items()}
    r = sub.add_parser("report", help="quantization report: accuracy against word width, of a run or on the "
                                      "embedded digits data")
    r.add_argument("run", nargs="?", default=None,
                   help="a run folder of fxp train (or its checkpoint.pt) to report on (default: train a small MLP "
                        "on digits)")
    r.add_argument("--out", default="runs/report", help="folder for report.md, report.json and the plot")
    r.add_argument("--bits", type=_bits_list, default=report.DEFAULT_BITS, help="word widths, e.g. 4,8,16")
    r.add_argument("--epochs", type=_within(train.EPOCHS), default=None,
                   help=f"training epochs of the small MLP (without RUN only; default: {mlp['epochs']})")
    r.add_argument("--rounding", default=None, choices=fxp.ROUNDING,
                   help=f"rounding of the quantized values (default: the run's own; {mlp['rounding']} without RUN)")
    r.add_argument("--overflow", default=None, choices=fxp.OVERFLOW,
                   help=f"overflow mode (without RUN only; default: {mlp['overflow']})")
    _seed(r, f"seed of the digits split (default: the run's own; {mlp['seed']} without RUN)", default=None)
    _force(r, "a report")
    _quiet(r)
    r.set_defaults(func=_cmd_report)

    t = sub.add_parser("train", help="train a model in the dynamic fixed-point simulator")
    _add_training_args(t)
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.json, curves.png, weights.png")
    t.add_argument("--baseline", action="store_true", help="also train the float baseline with the same recipe")
    _force(t, "a training run")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("compress", help="prune a trained run's weights and neurons, retrain, and report")
    c.add_argument("run", help="the run folder of fxp train (or its checkpoint.pt)")
    c.add_argument("--out", required=True, help="the new run folder: checkpoint.pt, metrics.json, report.md, ...")
    from fxp.compress import pipeline, prune

    c.add_argument("--prune", type=_per_layer(prune.SPARSITY, "a sparsity"), default=None,
                   help="fraction of weights to zero: one for every layer (0.92) or per layer (fc1=0.92,fc3=0.75)")
    c.add_argument("--quality", type=_per_layer(prune.QUALITY, "a quality"), default=None,
                   help="instead of --prune, Deep Compression's threshold: zero |w| <= quality x the layer's "
                        "weight standard deviation")
    c.add_argument("--scope", default="layer", choices=prune.SCOPES,
                   help="layer: each layer to its sparsity; global: one magnitude ranking across all layers")
    c.add_argument("--stages", type=_within(pipeline.STAGES), default=1,
                   help="rounds of prune then retrain, each keeping a geometric share towards the target")
    c.add_argument("--dynamic", action="store_true",
                   help="recompute the masks every retraining epoch (gradual pruning) instead of once a round")
    c.add_argument("--retrain-epochs", type=_within(pipeline.RETRAIN_EPOCHS), default=2,
                   help="epochs of retraining after each round (0: prune only)")
    from fxp.train import LR

    c.add_argument("--lr", type=_within(LR), default=None,
                   help="retraining learning rate (default: a tenth of the run's)")
    from fxp.train import REGULARIZER, WEIGHT_DECAY

    c.add_argument("--weight-decay", type=_within(WEIGHT_DECAY), default=None,
                   help="L2 weight decay while retraining and learning gates (default: the run's)")
    c.add_argument("--neurons", type=_within(pipeline.NEURON_THRESHOLD), default=None, metavar="THRESHOLD",
                   help="remove every hidden neuron whose incoming or outgoing weight norm is at most THRESHOLD "
                        "(train with --group-in/--group-out first)")
    c.add_argument("--share-bits", type=_per_layer(pipeline.SHARE_BITS, "share bits", whole=True), default=None,
                   help="k-means weight sharing after pruning: 2**B codes a layer, one number (5) or per layer "
                        "(conv1=8,fc1=5); the centroids then train --share-epochs")
    c.add_argument("--share-init", default="linear", choices=pipeline.SHARE_INITS,
                   help="where k-means starts: linear (evenly over the weights' range), density (over their CDF), "
                        "random")
    c.add_argument("--share-epochs", type=_within(pipeline.RETRAIN_EPOCHS), default=2,
                   help="epochs of training the shared centroids (0: none), in every sharing round")
    c.add_argument("--share-rounds", type=_within(pipeline.SHARE_ROUNDS), default=1,
                   help="train -> cluster -> share this many times: each round after the first releases the ties, "
                        "trains the weights freely --share-free-epochs (pruned ones stay 0), clusters and shares "
                        "them again and trains the centroids --share-epochs")
    c.add_argument("--share-free-epochs", type=_within(pipeline.SHARE_FREE_EPOCHS), default=None,
                   help=f"with --share-rounds: epochs of free training before each later round's clustering "
                        f"(default: {pipeline.SHARE_FREE_EPOCHS_DEFAULT})")
    c.add_argument("--share-restart", default=None, choices=pipeline.SHARE_RESTARTS,
                   help=f"with --share-rounds: where a later round's k-means starts: codebook (the last round's "
                        f"centroids) or init (--share-init again) (default: {pipeline.SHARE_RESTARTS[0]})")
    c.add_argument("--huffman", action="store_true",
                   help="with --share-bits: Huffman-code the codes and the sparse gaps, and report those bytes")
    c.add_argument("--architecture", action="store_true",
                   help="read a run trained with --tsrelu: remove the neurons and nonlinearities its gates turned "
                        "off and merge the linear layers left adjacent")
    c.add_argument("--gate-epochs", type=_within(pipeline.GATE_EPOCHS), default=3,
                   help="with --tsrelu/--gate-l1/--depth-l1: epochs of learning the gates on the trained run before reading them")
    c.add_argument("--uniform", type=_within(pipeline.UNIFORM_BITS), default=None, metavar="BITS",
                   help="quantization-aware retraining (--retrain-epochs) with every weight on a BITS-bit uniform grid "
                        "(fxp/compress/uniform.py; a float run): the checkpoint keeps the grid values, which fxp "
                        "export --scales per-channel stores as BITS-bit codes")
    c.add_argument("--uniform-scheme", default="affine", choices=pipeline.UNIFORM_SCHEMES,
                   help="with --uniform: affine (the channel's [min, max] with a zero point) or symmetric "
                        "(max|w| / (2**(BITS-1) - 1), no zero point)")
    c.add_argument("--uniform-per-tensor", action="store_true",
                   help="with --uniform: one scale and zero point per layer instead of per output channel")
    c.add_argument("--range-reg", type=_within(REGULARIZER), default=0.0,
                   help="range regularizer while retraining: strength times the sum over output channels of "
                        "(max - min)**2 of the weights")
    _add_regularizer_args(c)
    _seed(c, "seed of the retraining's shuffling and of --share-init random (default: the run's)", default=None)
    _force(c, "a run")
    _quiet(c)
    c.set_defaults(func=_cmd_compress)

    s = sub.add_parser("sweep", help="accuracy against bit width for activations, gradients, updates")
    _add_training_args(s)
    s.add_argument("--bits", type=_bits_list, default=(4, 6, 8, 10, 12), help="word widths to try, e.g. 4,8,12")
    s.add_argument("--vary", default="act,grad,update", help="dimensions: act, grad, update, prop (act+grad)")
    s.add_argument("--tolerance", type=_float_in(0, 100), default=1.0,
                   help="points of accuracy that count as 'within' the float baseline")
    s.add_argument("--out", required=True, help="folder for sweep.md, sweep.json and sweep.png")
    _force(s, "a sweep")
    s.set_defaults(func=_cmd_sweep)

    e = sub.add_parser("export", help="write the integer model description (.fxpm) of a trained run")
    e.add_argument("run", help="run folder of fxp train (or its checkpoint.pt)")
    e.add_argument("--out", required=True, help="the .fxpm folder to write (model.json + arrays.npz)")
    e.add_argument("--scales", default=None, choices=("pow2", "per-channel"),
                   help="pow2: the run's own fixed-point formats; per-channel: post-training int8 with "
                        "per-channel weights and multiplier+shift (default: pow2 unless the run is float)")
    e.add_argument("--weights", default=None, choices=("symmetric", "affine"),
                   help="per-channel weight quantizer: symmetric, or affine with a zero point per channel (default: "
                        "the scheme of a run of fxp compress --uniform, else symmetric)")
    e.add_argument("--dataset", default=None,
                   help="calibration data for per-channel scales (default: the run's dataset; not loaded for pow2)")
    e.add_argument("--calibrate", type=_int_in(1, 1 << 24), default=2000, help="calibration images (per-channel)")
    _seed(e, "the digits split of the calibration data (use the training seed)")
    _force(e, "a description")
    e.set_defaults(func=_cmd_export)

    pr = sub.add_parser("predict", help="golden-model accuracy and golden-vs-PyTorch integer mismatches")
    pr.add_argument("model", help="an .fxpm folder")
    pr.add_argument("--dataset", default="digits", help="digits, fashion-mnist, or an MNIST-format IDX folder")
    pr.add_argument("--run", default=None, help="the training run, for the fake-quantized and float accuracies")
    pr.add_argument("--limit", type=_int_in(1, 1 << 31), default=None, help="first N test images only (default: all)")
    _seed(pr, "the digits split (use the training seed)")
    pr.add_argument("--json", default=None, help="also write the record as JSON into this file")
    _force(pr, "an existing --json file")
    pr.set_defaults(func=_cmd_predict)

    g = sub.add_parser("gen", help="generate hardware: fxp gen unit [xnor|mac] ... or fxp gen model MODEL ...")
    gsub = g.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser, required=True)
    u = gsub.add_parser("unit", help="one engine: Verilog, wrapper, JSON sidecar, layer.fxpm")
    from hdl_gen.engines import ENGINES

    u.add_argument("kind", nargs="?", default=None, choices=tuple(ENGINES),
                   help="xnor (binary_dense layers) or mac (dense layers); with --from, the layer decides")
    from hdl_gen.gen import MAX_SIZE

    size = _int_in(1, MAX_SIZE)
    u.add_argument("--mw", type=size, help="inputs per vector of a random layer")
    u.add_argument("--mh", type=size, help="outputs per vector of a random layer")
    u.add_argument("--pe", type=size, default=1, help="parallel outputs (divides MH)")
    u.add_argument("--simd", type=size, default=1, help="parallel inputs (divides MW)")
    _seed(u, "seed of the random layer")
    u.add_argument("--from", dest="from_model", default=None, help="an .fxpm to take the layer from")
    u.add_argument("--layer", default=None, help="with --from: the dense or binary_dense layer to build")
    _add_unit_options(u)
    u.add_argument("--top", default=None,
                   help="module name, a Verilog identifier (default fxp_xnor / fxp_mac); the wrapper is <top>_top")
    u.add_argument("--out", required=True, help="the unit folder to write")
    _force(u, "a unit")
    u.set_defaults(func=_cmd_gen)

    nm = gsub.add_parser("model", help="a whole model as one streaming accelerator: Verilog, wrapper, sidecar, "
                                        "folding report")
    nm.add_argument("model", help="an .fxpm folder of flatten, dense and binary_dense layers")
    from fxp.datasets import DIGITS_LEVELS, IDX_LEVELS

    nm.add_argument("--dataset", default="digits",
                    help=f"the data it will take: digits (pixels 0..{DIGITS_LEVELS}), fashion-mnist or an IDX folder "
                         f"(0..{IDX_LEVELS}); recorded for fxp sim")
    nm.add_argument("--folding", default=None,
                    help="PE and SIMD per layer from a JSON file ({\"pixels_per_word\": P, \"layers\": {NAME: "
                         "{\"pe\": .., \"simd\": ..}}}, or an earlier network's sidecar)")
    nm.add_argument("--cycles", type=_int_in(1, 1 << 30), default=None,
                    help="fold for this many cycles per frame (default: the frame's pixels, one pixel a cycle)")
    nm.add_argument("--fps", type=_float_in(0, 1e12, lo_open=True), default=None,
                    help="fold for this many frames per second at --clock-mhz")
    nm.add_argument("--clock-mhz", type=_float_in(0, 1e4, lo_open=True), default=None,
                    help="the clock --fps counts with (default 100); with --board, the board top's clock: above the "
                         "board's oscillator an ECP5 PLL makes it (default: the oscillator)")
    nm.add_argument("--board", default=None,
                    help="write the board top for this board (fxp boards lists them; fxp build makes the bitstream) "
                         "and, without --cycles, --fps or --folding, fold for the fastest frame rate whose estimated "
                         "LUT4, DSPs and block RAM fit it")
    nm.add_argument("--baud", type=_int_in(300, 100_000_000), default=None,
                    help="the board top's serial bit rate, 8N1 (default 115200; with --board)")
    _add_unit_options(nm)
    nm.add_argument("--top", default="fxp_network", help="module name, a Verilog identifier; the wrapper is <top>_top")
    nm.add_argument("--out", required=True, help="the network folder to write")
    _force(nm, "a network")
    nm.set_defaults(func=_cmd_gen_model)

    sm = sub.add_parser("sim", help="replay golden-model vectors through a generated unit, or test images through "
                                    "a generated network")
    sm.add_argument("dir", help="a folder made by fxp gen unit or fxp gen model (the result is recorded there as "
                                "sim_<simulator>.json)")
    sm.add_argument("--simulator", default="amaranth", choices=("amaranth", "icarus", "verilator"),
                    help="Amaranth's own simulator, or the Verilog through cocotb on Icarus or Verilator")
    sm.add_argument("--vectors", type=_int_in(1, 1 << 40), default=1000,
                    help="input vectors to replay (a network: test images, at most the whole test set)")
    sm.add_argument("--dataset", default=None,
                    help="a network folder's test images (default: the dataset it was made for)")
    _seed(sm, "seed of the input vectors, gaps and stalls")
    sm.add_argument("--waves", action="store_true", help="write waveforms (VCD; FST on icarus)")
    sm.add_argument("--harness", default="cocotb", choices=("cocotb", "cpp"),
                    help="cocotb, or cpp: a compiled Verilator replay harness for millions of vectors "
                         "(--simulator verilator only)")
    sm.add_argument("--uart", action="store_true",
                    help="a board folder (fxp gen model --board): its board top under cocotb, test images as real "
                         "serial frames (cocotbext-uart) on its rx pin, every reply on tx compared with the golden "
                         "model's")
    sm.add_argument("--gap", type=_float_in(0, 1, hi_open=True), default=None,
                    help="probability of an idle input cycle before a vector (default 0.3; 0 with --harness cpp)")
    sm.add_argument("--stall", type=_float_in(0, 1, hi_open=True), default=None,
                    help="probability of output backpressure in a cycle (default 0.3; 0 with --harness cpp)")
    sm.set_defaults(func=_cmd_sim)

    bd = sub.add_parser("build", help="the bitstream of a folder made by fxp gen model --board (YoWASP Yosys, "
                                      "nextpnr, icepack/ecppack), and its report: utilization, Fmax, frames/s")
    bd.add_argument("dir", help="a folder made by fxp gen model MODEL --board NAME")
    bd.add_argument("--timeout", type=_float_in(1, 86400), default=3600.0, help="seconds each tool may take")
    bd.add_argument("--quiet", action="store_true", help="no progress")
    bd.set_defaults(func=_cmd_build)

    rn = sub.add_parser("run", help="test images through a board over its serial port (--port), or through a board "
                                    "folder's top simulated behind a pseudo-terminal (--sim): predictions, accuracy")
    rn.add_argument("--port", default=None, help="the board's serial port, e.g. /dev/ttyUSB1")
    rn.add_argument("--sim", default=None, metavar="DIR",
                    help="a folder made by fxp gen model MODEL --board NAME: its board top in Verilator, bit by bit "
                         "on the serial pins, behind a pseudo-terminal the host side opens like a board's port")
    rn.add_argument("--folder", default=None, metavar="DIR",
                    help="with --port: the board folder the board was built from, to compare every reply with the "
                         "golden model's")
    rn.add_argument("--dataset", default=None, help="the test images (default: the folder's dataset)")
    rn.add_argument("--images", type=_int_in(1, 1 << 30), default=None, help="how many (default: the whole test set)")
    rn.add_argument("--scores", action="store_true", help="ask for every score too, and compare them (needs the folder)")
    rn.add_argument("--baud", type=_int_in(300, 100_000_000), default=None,
                    help="the serial bit rate (default: the folder's, else 115200)")
    rn.add_argument("--timeout", type=_float_in(0, 3600, lo_open=True), default=None,
                    help="seconds to wait for each reply (default: 5 from a board, 600 from --sim)")
    rn.add_argument("--quiet", action="store_true", help="no progress")
    rn.set_defaults(func=_cmd_run)

    dm = sub.add_parser("demo", help="the whole flow on the embedded digits data: train in dynamic fixed point, "
                                     "binarize, export, generate for a board, verify bit-exactly, bitstream, report")
    dm.add_argument("--out", default="runs/demo", help="the folder for every step's files and report.html")
    dm.add_argument("--board", default="icebreaker", help="the board to build for (fxp boards lists them)")
    dm.add_argument("--epochs", type=_int_in(1, 1000), default=15, help="training epochs")
    _seed(dm, "seed of the training run")
    dm.add_argument("--no-build", action="store_true", help="stop before the bitstream (no YoWASP tools)")
    _quiet(dm)
    _force(dm, "an earlier demo")
    dm.set_defaults(func=_cmd_demo)

    b = sub.add_parser("boards", help="list the boards fxp can build for: their amaranth-boards platform and "
                                      "profile (boards/*.toml)")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.set_defaults(func=_cmd_boards)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except FxpError as e:
        print(f"fxp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
