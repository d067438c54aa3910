"""Mutation check: bugs that once passed the test suite must now fail it.

Each mutant is a small edit to product code that reproduces a real way to be wrong (a tie rounded
the other way, a lane read with the wrong sign, a gradient left in float, ...). For each, the
repository is copied to a scratch folder, the edit applied there (never to the working tree), and
the tests that should catch it are run; the mutant must make them fail. The unmutated copy must pass
the same tests first, so a failure means the mutant was caught, not that the tests were broken.

    python bench/mutants.py [--write-docs] [--only NAME]

Exit status 1 if any mutant survives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_section  # noqa: E402

# (name, [(file, old text, new text), ...], tests that must fail)
MUTANTS = [
    ("MAC: ties round down (uniform shift, every dynamic fixed-point export)",
     [("hdl_gen/mac.py", "rounded.eq((sums[p] + ((1 << sh) >> 1)) >> sh)", "rounded.eq((sums[p] + ((1 << sh) >> 1) - 1) >> sh)")],
     ["tests/test_unit_formats.py", "tests/test_hdl_mac.py"]),
    ("MAC: ties round down (per-channel shifts)",
     [("hdl_gen/mac.py", "half = Mux(sh.any(), Const(1, 1) << shift_minus_1, 0)",
       "half = Mux(sh.any(), (Const(1, 1) << shift_minus_1) - 1, 0)")],
     ["tests/test_unit_formats.py", "tests/test_hdl_mac.py"]),
    ("MAC: a shift of 0 still adds a half",
     [("hdl_gen/mac.py", "half = Mux(sh.any(), Const(1, 1) << shift_minus_1, 0)", "half = Const(1, 1) << shift_minus_1")],
     ["tests/test_unit_formats.py"]),
    ("MAC: output lanes lose their high bits",
     [("hdl_gen/mac.py", "m.d.comb += output.lanes[p].eq(y)", "m.d.comb += output.lanes[p].eq(y[:8])")],
     ["tests/test_unit_formats.py"]),
    ("MAC: unsigned input lanes read as signed",
     [("hdl_gen/mac.py", "(lane.as_signed() if self.in_lane_signed else lane.as_unsigned())", "lane.as_signed()")],
     ["tests/test_unit_formats.py"]),
    ("unit folder: a u8 layer rewritten as s8",
     [("hdl_gen/gen.py", "Format(fmt.word_bits, 0, fmt.signed)", "Format(fmt.word_bits, 0, True)")],
     ["tests/test_unit_formats.py"]),
    ("vector packer: casts a value its lane cannot hold",
     [("sim/lanes.py", "    check_lanes(values, width, signed)\n", "")],
     ["tests/test_unit_formats.py", "tests/test_replay.py"]),
    ("MAC: a threshold compared with > instead of >=",
     [("hdl_gen/mac.py", "bits = [totals[p] >= consts", "bits = [totals[p] > consts")],
     ["tests/test_mixed.py"]),
    ("golden: threshold compare > instead of >= (hardware tests only)",
     [("fxp/ops/binary_layer.py", "(pc >= thr.astype(np.int64))", "(pc > thr.astype(np.int64))")],
     ["tests/test_hdl_xnor.py"]),
    ("golden and PyTorch: convolution padding holds the zero point",
     [("fxp/ops/conv2d.py", "x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))",
       "x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-self.input_zero_point)"),
      ("fxp/ops/conv2d.py", "return F.conv2d(x, w, stride=self.stride, padding=self.padding)",
       "return F.conv2d(F.pad(x, [self.padding] * 4, value=-self.input_zero_point), w, stride=self.stride)")],
     ["tests/test_reference.py"]),
    ("golden and PyTorch: requantization ties round down",
     [("fxp/ops/integer_layer.py", "np.left_shift(1, np.maximum(s - 1, 0))", "(np.left_shift(1, np.maximum(s - 1, 0)) - 1)"),
      ("fxp/ops/integer_layer.py", "torch.ones_like(s) << (s - 1).clamp(min=0)",
       "(torch.ones_like(s) << (s - 1).clamp(min=0)) - 1")],
     ["tests/test_reference.py"]),
    ("fixed mode: gradients leave FxQuant unquantized",
     [("fxp/layers.py", "        y, _ = quantize_to_grid(g, q.grad.fmt, q.cfg.rounding)\n        return y, None",
       "        y, _ = quantize_to_grid(g, q.grad.fmt, q.cfg.rounding)\n        return g, None")],
     ["tests/test_fixed_grids.py"]),
    ("fixed mode: updates not rounded into the parameter's format",
     [("fxp/layers.py", "p.copy_(quantize_to_grid(new, tracker.fmt, cfg.update_rounding, generator=self.generator)[0])",
       "p.copy_(new)")],
     ["tests/test_fixed_grids.py"]),
    ("sweep: every row diverges",
     [("fxp/sweep.py", 'acc, status = hist[-1]["test_accuracy"], "ok"', 'acc, status = None, "diverged"')],
     ["tests/test_sweep.py"]),
]


def _copy_repo(dst: Path) -> None:
    """The working tree as git sees it (tracked and new files, nothing ignored) into ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def _pytest(root: Path, tests: list[str]) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's packages, not the editable install's
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "-p", "no:cacheprovider", *tests],
                       cwd=root, env=env, capture_output=True, text=True)
    out = r.stdout.splitlines()
    lines = ([x for x in out if x.startswith("FAILED ")] or [x for x in out if x.startswith("ERROR ") and "::" in x]
             or out[-1:])
    return r.returncode, time.perf_counter() - t, (lines[0] if lines else "")[:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true", help="rewrite the mutation section of docs/benchmarks.md")
    ap.add_argument("--only", default=None, help="run the mutants whose name contains this text")
    args = ap.parse_args()
    mutants = [m for m in MUTANTS if args.only is None or args.only in m[0]]
    rows, survived = [], 0
    with tempfile.TemporaryDirectory(prefix="fxp-mutants-") as tmp:
        clean = Path(tmp) / "clean"
        _copy_repo(clean)
        tests = sorted({t for _, _, ts in mutants for t in ts})
        rc, seconds, last = _pytest(clean, tests)
        print(f"unmutated: {'pass' if rc == 0 else 'FAIL'} in {seconds:.0f} s ({last})", flush=True)
        if rc != 0:
            print("the tests fail without any mutant: fix them first", file=sys.stderr)
            return 1
        for name, edits, tests in mutants:
            work = Path(tmp) / "mutant"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(clean, work)
            for file, old, new in edits:
                text = (work / file).read_text()
                if text.count(old) != 1:
                    print(f"{name}: the text to mutate in {file} is gone or ambiguous; update bench/mutants.py",
                          file=sys.stderr)
                    return 1
                (work / file).write_text(text.replace(old, new))
            rc, seconds, first = _pytest(work, tests)
            killed = rc != 0
            survived += not killed
            print(f"{'killed  ' if killed else 'SURVIVED'} {seconds:5.0f} s  {name}: {first}", flush=True)
            rows.append((name, ", ".join(Path(t).name for t in tests), "killed" if killed else "**survived**",
                         first.split(" - ")[0].replace("FAILED ", "") if killed else "—", seconds))
    if args.write_docs:
        table = "\n".join(f"| {n} | {t} | {k} | `{f}` | {s:.0f} |" for n, t, k, f, s in rows)
        write_section("mutants", "## Mutation check (`bench/mutants.py`, part of `make bench`)\n\n"
                      "Each mutant is applied to a scratch copy of the repository; the tests named must fail "
                      "(they pass unmutated first).\n\n| mutant | tests | result | first failure | s |\n"
                      f"|---|---|---|---|---:|\n{table}")
    print(f"{len(rows) - survived} of {len(rows)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
