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
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of word widths, e.g. 4,8,16")


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxp", description="From PyTorch to bit-exact FPGA accelerators.")
    p.add_argument("--version", action="version", version=f"fxp {fxp.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("report", help="quantization report on the embedded digits data (accuracy against word width)")
    r.add_argument("--out", default="runs/report", help="folder for report.md, report.json and the plot")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--bits", type=_bits_list, default=(2, 3, 4, 5, 6, 8, 10, 12, 16), help="word widths, e.g. 4,8,16")
    r.add_argument("--epochs", type=int, default=200)
    r.add_argument("--rounding", default="nearest_even", choices=fxp.ROUNDING)
    r.add_argument("--overflow", default="saturate", choices=fxp.OVERFLOW)
    r.set_defaults(func=_cmd_report)

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
