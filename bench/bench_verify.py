"""Verification speed: the same units replayed through cocotb on Verilator and Icarus, Amaranth's simulator and
the Verilator C++ replay harness, every output word compared with the golden model.

    python bench/bench_verify.py [--cpp-vectors 10000000] [--py-vectors 2000] [--write-docs]

Units (``fxp gen unit``, random weights, seed 0): the 64-lane units of the target (64 input lanes a
cycle, one vector a cycle: XNOR MW=64 and int8 MAC MW=64, one output each), and two wide ones: a fully
parallel 64x64 XNOR-popcount unit (4,096 synapses a cycle) and an int8 MAC unit of 64 inputs x 16
outputs (1,024 multipliers, a 512-bit input port). Builds are fresh (folders regenerated). Exit
status 1 if any path mismatches.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json, write_section  # noqa: E402

from fxp.cli import main as fxp_main  # noqa: E402
from fxp.errors import FxpError  # noqa: E402
from sim.run import run_unit_sim  # noqa: E402

UNITS = {
    "xnor 64-lane: 64x1, PE=1 SIMD=64": ["xnor", "--mw", "64", "--mh", "1", "--pe", "1", "--simd", "64"],
    "mac 64-lane: 64x1, PE=1 SIMD=64": ["mac", "--mw", "64", "--mh", "1", "--pe", "1", "--simd", "64"],
    "xnor 64x64, PE=64 SIMD=64": ["xnor", "--mw", "64", "--mh", "64", "--pe", "64", "--simd", "64"],
    "mac 64x16, PE=16 SIMD=64": ["mac", "--mw", "64", "--mh", "16", "--pe", "16", "--simd", "64"],
}
TARGET = 10e6  # C++-harness vectors/s on one core for a 64-lane unit
CLOCK_NS = 10  # the cocotb testbench's clock period


def _cocotb_times(folder: Path, simulator: str) -> tuple[float, int]:
    """(seconds of the test itself, cycles simulated) from cocotb's results file."""
    case = ET.parse(folder / f"sim_build_{simulator}" / "results.xml").find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    return float(case.get("time")), round(float(props["sim_time_duration"]) / CLOCK_NS)


def _row(unit: str, path: str, rec: dict, build: float | None, run: float, cycles: int | None) -> dict:
    return {"unit": unit, "path": path, "vectors": rec["vectors"], "build_seconds": build, "run_seconds": run,
            "vectors_per_second": rec["vectors"] / run, "cycles_per_second": cycles / run if cycles else None,
            "mismatches": rec["mismatches"]}


def bench_unit(name: str, gen_args: list[str], work: Path, py_vectors: int, cpp_vectors: int) -> list[dict]:
    """Generate the unit afresh and replay it on each path; one row per path."""
    folder = work / re.sub(r"[^A-Za-z0-9]+", "_", name.split(" (")[0])
    shutil.rmtree(folder, ignore_errors=True)
    if fxp_main(["gen", "unit", *gen_args, "--out", str(folder)]) != 0:
        raise SystemExit(f"fxp gen unit {' '.join(gen_args)} failed")
    rows = []
    for sim in ("verilator", "icarus"):
        rec = run_unit_sim(folder, sim, py_vectors, seed=0)
        test_seconds, cycles = _cocotb_times(folder, sim)
        rows.append(_row(name, f"cocotb + {sim.capitalize()}", rec, rec["seconds"] - test_seconds, test_seconds, cycles))
    rec = run_unit_sim(folder, "amaranth", py_vectors, seed=0)
    rows.append(_row(name, "Amaranth simulator", rec, None, rec["seconds"], None))
    rec = run_unit_sim(folder, "verilator", cpp_vectors, seed=0, harness="cpp")
    row = _row(name, "Verilator C++ harness", rec, rec["build_seconds"], rec["seconds"], rec["cycles"])
    row["prepare_seconds"] = rec["prepare_seconds"]
    rows.append(row)
    for r in rows:
        print(f"{name:44} {r['path']:24} {r['vectors']:>10} vectors {r['vectors_per_second']:>12,.0f} vectors/s "
              f"{r['mismatches']} mismatches", flush=True)
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.2g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--py-vectors", type=int, default=2000, help="vectors for cocotb and Amaranth's simulator")
    ap.add_argument("--cpp-vectors", type=int, default=10_000_000, help="vectors for the C++ harness, per unit")
    ap.add_argument("--work", default="runs/bench/verify", help="folder for the unit folders")
    ap.add_argument("--json", default="runs/bench/bench_verify.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = []
    try:
        for name, gen_args in UNITS.items():
            rows += bench_unit(name, gen_args, Path(args.work), args.py_vectors, args.cpp_vectors)
    except FxpError as e:
        print(f"bench_verify: {e}", file=sys.stderr)
        return 2
    base = {r["unit"]: r["vectors_per_second"] for r in rows if r["path"] == "cocotb + Verilator"}
    lines = [
        "Command: `python bench/bench_verify.py --write-docs`  ",
        f"Machine: {machine()}; every simulation runs on one core", "",
        ("Every output word is compared with the golden model (`sim/golden.py`); the vectors are `fxp sim`'s "
        "seeded stream (corner cases first). cocotb and Amaranth's simulator run with random input gaps and output "
        "backpressure (p = 0.3), the C++ harness without (its tests use both). *build s*: for cocotb the build "
        "and start-up (total minus the test's own time in `results.xml`), for the C++ harness the Verilator "
        "build, which runs beside the numpy vector and golden-output preparation (*prepare s*). Amaranth's "
        "*run s* includes elaborating the design, and its runner simulates a fixed horizon of cycles rather than "
        "stopping at the last output, so its rate is a lower bound."), "",
        "| unit | path | vectors | build s | prepare s | run s | vectors/s | cycles/s | × cocotb+Verilator "
        "| mismatches |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speedup = r["vectors_per_second"] / base[r["unit"]] if r["unit"] in base else None
        lines.append(f"| {r['unit']} | {r['path']} | {r['vectors']:,} | {_fmt(r['build_seconds'], '.1f')} | "
                     f"{_fmt(r.get('prepare_seconds'), '.1f')} | {r['run_seconds']:.2f} | "
                     f"{r['vectors_per_second']:,.0f} | {_fmt(r['cycles_per_second'], ',.0f')} | "
                     f"{_ratio(speedup)} | {r['mismatches']} |")
    lanes = [r for r in rows if "64-lane" in r["unit"] and r["path"] == "Verilator C++ harness"]
    lines += ["", "Target ≥ 10M vectors/s on one core for a 64-lane unit (C++ harness): " + "; ".join(
        f"{r['unit'].split(':')[0]} {r['vectors_per_second'] / 1e6:.1f}M — {'met' if r['vectors_per_second'] >= TARGET else 'NOT met'}"
        for r in lanes) + ". The wide units simulate 4,096 synapses or 1,024 multipliers a cycle bit by bit; "
        "their rate is Verilator's evaluation of that much logic, not the harness."]
    md = "\n".join(lines)
    print(md)
    bad = sum(r["mismatches"] for r in rows)
    save_json(args.json, {"machine": machine(), "py_vectors": args.py_vectors, "cpp_vectors": args.cpp_vectors,
                                 "rows": rows, "mismatches": bad})
    if args.write_docs:
        write_section("bench_verify", md)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
