"""The ``fxp`` command. Each subcommand is a thin layer over a library function.

Bad input raises :class:`fxp.FxpError`; here it becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import fxp
from fxp.errors import FxpError


def _bits_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of word widths, e.g. 4,8,16") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from fxp.report import check_out_dir, run_report

    out = Path(args.out)
    check_out_dir(out)
    rec = run_report(out, seed=args.seed, bits=args.bits, epochs=args.epochs, rounding=args.rounding, overflow=args.overflow)
    print(f"{rec['model']} on {rec['dataset']}: float accuracy {100 * rec['float_accuracy']:.2f} %")
    print(f"{'word bits':>9}  {'accuracy':>8}")
    for row in rec["sweep"]:
        print(f"{row['word_bits']:>9}  {100 * row['accuracy']:>7.2f}%")
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'accuracy_vs_bits.png'}")
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
                  optimizer=args.optimizer)


def _cmd_train(args: argparse.Namespace) -> int:
    from fxp.datasets import load
    from fxp.train import finish_distributed, init_distributed, run_train

    cfg, recipe = _config(args), _recipe(args)  # validate before loading anything
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
    from fxp.sweep import run_sweep

    cfg, recipe = _config(args), _recipe(args)
    data = load(args.dataset, seed=args.seed)
    rec = run_sweep(args.model, data, cfg, recipe, list(args.bits), args.vary.split(","), args.out,
                    args.tolerance, progress=not args.quiet)
    print((Path(args.out) / "sweep.md").read_text())
    print(f"smallest within {args.tolerance} point(s): {rec['smallest_within_tolerance']}")
    return 0


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="digits_mlp",
                   help="lenet300, lenet5, digits_mlp, bnn_digits, sfc_bnn, or a model TOML file")
    p.add_argument("--dataset", default="digits", help="digits, fashion-mnist, or an MNIST-format IDX folder")
    p.add_argument("--mode", default="fixed", choices=("float", "qat", "fixed"))
    p.add_argument("--act-bits", type=int, default=10)
    p.add_argument("--grad-bits", type=int, default=10)
    p.add_argument("--update-bits", type=int, default=12, help="stored parameters in fixed mode")
    p.add_argument("--weight-bits", type=int, default=8, help="forward weights in qat mode")
    p.add_argument("--acc-bits", type=int, default=32)
    p.add_argument("--acc-overflow", default="saturate", choices=fxp.OVERFLOW)
    p.add_argument("--rounding", default="nearest_even", choices=fxp.ROUNDING)
    p.add_argument("--update-rounding", default="stochastic", choices=fxp.ROUNDING)
    p.add_argument("--max-overflow-rate", type=float, default=1e-4)
    p.add_argument("--update-interval", type=int, default=1, help="batches between scale revisions")
    p.add_argument("--exact", action="store_true", help="accumulate in float64 (exact) instead of float32")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_export(args: argparse.Namespace) -> int:
    from fxp.export import export

    calib = None
    if args.scales != "pow2":  # (per-channel, or the default for a float run) needs calibration data
        from fxp.datasets import load

        dataset = args.dataset or _run_dataset(args.run)
        calib = load(dataset, seed=args.seed).x_train[: args.calibrate]
    model = export(args.run, args.out, scales=args.scales, calibration=calib, weights=args.weights)
    kinds = ", ".join(f"{layer['name']} ({layer['op']})" for layer in model.layers)
    print(f"wrote {args.out}: {len(model.layers)} layers: {kinds}")
    return 0


def _run_dataset(run: str) -> str:
    metrics = Path(run) / "metrics.json"
    if not metrics.is_file():
        raise FxpError(f"{metrics} is missing, so the run's dataset is unknown; give --dataset")
    return json.loads(metrics.read_text())["dataset"]


def _cmd_predict(args: argparse.Namespace) -> int:
    from fxp.datasets import load
    from fxp.predict import run_predict

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

    options = {"weights_in": args.weights_in, "pipeline": args.pipeline}
    if args.popcount:
        options["popcount"] = args.popcount
    if args.table_bits is not None:
        options["table_bits"] = args.table_bits
    car = generate(args.kind, args.out, mw=args.mw, mh=args.mh, pe=args.pe, simd=args.simd, seed=args.seed,
                   model_path=args.from_model, layer=args.layer, top=args.top, options=options)
    print(f"wrote {args.out}: {car['top']}.v, {car['wrapper']}.v, {car['top']}.json, layer.fxpm"
          f"{''.join(', ' + name for name in car['sim_models'])} — "
          f"MW={car['mw']} MH={car['mh']} PE={car['pe']} SIMD={car['simd']}, {car['cycles_per_vector']} cycles per vector")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from sim.run import run_unit_sim

    rec = run_unit_sim(args.dir, args.simulator, args.vectors, args.seed, args.waves, args.harness, args.gap,
                       args.stall)
    rate = f", {rec['vectors_per_second']:.0f} vectors/s" if rec["vectors_per_second"] else ""
    on = rec["simulator"] + (" (C++ harness)" if args.harness == "cpp" else "")
    print(f"{rec['unit']} on {on}: {rec['vectors']} vectors, {rec['output_words']} output words, "
          f"{rec['mismatches']} mismatches{rate}")
    if rec["mismatches"]:
        f = rec["first_mismatch"]
        print(f"first differing vector: {f['vector']} (output transfer {f['output_transfer']}, outputs "
              f"{f['outputs'][0]}..{f['outputs'][-1]}): expected {f['expected']}, got word {f['got_word']}")
        return 1
    return 0


def _cmd_boards(args: argparse.Namespace) -> int:
    from fxp.resources import boards

    profiles = boards()
    if args.json:
        print(json.dumps(profiles, indent=2))
        return 0
    for name, p in profiles.items():
        res = ", ".join(f"{k} {v}" for k, v in p["resources"].items())
        print(f"{name:12} {p['description']:32} {p['clock_mhz']:5.1f} MHz  {res}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``fxp: error: ...``) and exit status 2, like FxpError."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"fxp: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fxp", description="From PyTorch to bit-exact FPGA accelerators.")
    p.add_argument("--version", action="version", version=f"fxp {fxp.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("report", help="quantization report on the embedded digits data (accuracy against word width)")
    r.add_argument("--out", default="runs/report", help="folder for report.md, report.json and the plot")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--bits", type=_bits_list, default=(2, 3, 4, 5, 6, 8, 10, 12, 16), help="word widths, e.g. 4,8,16")
    r.add_argument("--epochs", type=int, default=200)
    r.add_argument("--rounding", default="nearest_even", choices=fxp.ROUNDING)
    r.add_argument("--overflow", default="saturate", choices=fxp.OVERFLOW)
    r.set_defaults(func=_cmd_report)

    t = sub.add_parser("train", help="train a model in the dynamic fixed-point simulator")
    _add_training_args(t)
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.json, curves.png, weights.png")
    t.add_argument("--baseline", action="store_true", help="also train the float baseline with the same recipe")
    t.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sweep", help="accuracy against bit width for activations, gradients, updates")
    _add_training_args(s)
    s.add_argument("--bits", type=_bits_list, default=(4, 6, 8, 10, 12))
    s.add_argument("--vary", default="act,grad,update", help="dimensions: act, grad, update, prop (act+grad)")
    s.add_argument("--tolerance", type=float, default=1.0, help="points of accuracy that count as 'within'")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_sweep)

    e = sub.add_parser("export", help="write the integer model description (.fxpm) of a trained run")
    e.add_argument("run", help="run folder of fxp train (or its checkpoint.pt)")
    e.add_argument("--out", required=True, help="the .fxpm folder to write (model.json + arrays.npz)")
    e.add_argument("--scales", default=None, choices=("pow2", "per-channel"),
                   help="pow2: the run's own fixed-point formats; per-channel: post-training int8 with "
                        "per-channel weights and multiplier+shift (default: pow2 unless the run is float)")
    e.add_argument("--weights", default="symmetric", choices=("symmetric", "affine"),
                   help="per-channel weight quantizer: symmetric, or affine with a zero point per channel")
    e.add_argument("--dataset", default=None, help="calibration data for per-channel (default: the run's dataset)")
    e.add_argument("--calibrate", type=int, default=2000, help="calibration images")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_cmd_export)

    pr = sub.add_parser("predict", help="golden-model accuracy and golden-vs-PyTorch integer mismatches")
    pr.add_argument("model", help="an .fxpm folder")
    pr.add_argument("--dataset", default="digits")
    pr.add_argument("--run", default=None, help="the training run, for the fake-quantized and float accuracies")
    pr.add_argument("--limit", type=int, default=None, help="first N test images only")
    pr.add_argument("--seed", type=int, default=0, help="the digits split (use the training seed)")
    pr.add_argument("--json", default=None, help="also write the record as JSON here")
    pr.set_defaults(func=_cmd_predict)

    g = sub.add_parser("gen", help="generate hardware: fxp gen unit xnor|mac ...")
    gsub = g.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser, required=True)
    u = gsub.add_parser("unit", help="one engine: Verilog, wrapper, JSON sidecar, layer.fxpm")
    u.add_argument("kind", choices=("xnor", "mac"))
    u.add_argument("--mw", type=int, help="inputs per vector (random weights)")
    u.add_argument("--mh", type=int, help="outputs per vector (random weights)")
    u.add_argument("--pe", type=int, default=1, help="parallel outputs (divides MH)")
    u.add_argument("--simd", type=int, default=1, help="parallel inputs (divides MW)")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--from", dest="from_model", default=None, help="an .fxpm to take the layer from")
    u.add_argument("--layer", default=None, help="with --from: the dense/binary_dense layer to build")
    u.add_argument("--weights-in", default="logic", choices=("logic", "bram", "dp16kd"),
                   help="weights as constant logic (LUTs), in block RAM (inferred), or in ECP5 DP16KD block RAM "
                        "through its output register (ECP5 only; icarus/verilator only)")
    u.add_argument("--table-bits", type=int, default=None, metavar="N",
                   help="xnor with --weights-in bram|dp16kd: the block RAM holds tables of counts, each addressed "
                        "by N bits (fold index and a few inputs), instead of weight words: fewer LUTs, more block "
                        "RAM (9: 512-word tables; at most 9 with dp16kd)")
    u.add_argument("--pipeline", action="store_true", help="pipeline registers for Fmax (more latency)")
    u.add_argument("--popcount", default=None, choices=("tree", "chain"),
                   help="xnor: balanced adder tree (default) or the naive chained sum")
    u.add_argument("--top", default=None, help="module name (default fxp_xnor / fxp_mac)")
    u.add_argument("--out", required=True)
    u.set_defaults(func=_cmd_gen)

    sm = sub.add_parser("sim", help="replay golden-model vectors through a generated unit")
    sm.add_argument("dir", help="a folder made by fxp gen unit")
    sm.add_argument("--simulator", default="amaranth", choices=("amaranth", "icarus", "verilator"))
    sm.add_argument("--vectors", type=int, default=1000)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--waves", action="store_true", help="write waveforms (VCD; FST on icarus)")
    sm.add_argument("--harness", default="cocotb", choices=("cocotb", "cpp"),
                    help="cocotb (default) or cpp: a compiled Verilator replay harness for millions of vectors "
                         "(--simulator verilator only)")
    sm.add_argument("--gap", type=float, default=None,
                    help="probability of an idle input cycle before a vector (default 0.3; 0 with --harness cpp)")
    sm.add_argument("--stall", type=float, default=None,
                    help="probability of output backpressure in a cycle (default 0.3; 0 with --harness cpp)")
    sm.set_defaults(func=_cmd_sim)

    b = sub.add_parser("boards", help="list the board profiles fxp can build for")
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
