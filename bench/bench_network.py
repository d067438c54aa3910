"""Whole-network accelerators: generated, verified on test images, synthesised; frames/s per LUT4 beside FINN.

    python bench/bench_network.py [--models runs/models] [--only NAME,..] [--cocotb 1000] [--icarus 100]
                                  [--no-synth] [--write-docs]

Reads the models that bench/bench_models.py trained and exported (``runs/models/NAME/model.fxpm``, and
their float, fake-quantized and golden accuracies from its JSON). For each model and folding below:

1. ``fxp gen model``: folded for a cycle target, or with ``--board`` to fit a board's resources;
2. ``fxp sim`` with cocotb on Verilator (``--cocotb`` test images) and Icarus (``--icarus``), with random
   input gaps and output backpressure (0.3 each, fxp sim's default); then the Verilator C++ harness
   over the whole test set at full rate (``out_ready`` high): mismatches (must be 0), hardware against
   golden accuracy, cycles per frame measured against predicted, and the wall time of the run
   including a fresh Verilator build (an empty cache);
3. Yosys (LUT4, FF, DSP, BRAM) and nextpnr (Fmax, placed and routed inside the pin harness of
   :mod:`hdl_gen.synth`; YoWASP's Yosys, or Debian's native one where YoWASP's fails and it is installed)
   for the board, frames/s at Fmax and frames/s per LUT4. FINN's SFC-max:
   12.3 M frames/s on 91,131 LUT6 (Umuroglu et al. 2017, Table II), 135 frames/s per LUT.

Exit status 1 if any run mismatches.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import MODELS  # noqa: E402
from common import add_only, machine, only, save_json, write_section  # noqa: E402

from fxp.cli import main as fxp  # noqa: E402
from hdl_gen import synth  # noqa: E402

FINN_SFC_MAX = {"frames_per_second": 12.3e6, "lut": 91131}  # Umuroglu et al. 2017 (FINN), Table II, SFC-max
# name: (trained model, folding: {"cycles": N} or {"board": NAME}, unit options, boards to synthesise for)
NETWORKS = {
    "bnn-digits": ("bnn-digits", {"cycles": 16}, {"pipeline": True}, ["icebreaker", "ulx3s-85f"]),
    "int8-digits-mlp": ("int8-digits-mlp", {"cycles": 64}, {}, ["ulx3s-85f"]),
    # DP16KD through its output register: with inferred block RAM (bram) the RAM's 5.8 ns clock-to-out began
    # the critical path (96.2 MHz); through the register, 124.2 MHz
    "sfc-bnn": ("sfc-bnn", {"cycles": 64}, {"weights_in": "dp16kd", "pipeline": True}, ["ulx3s-85f"]),
    # the fastest folding the board's estimate allows: tens of thousands of LUT4, verified, not synthesised here
    "sfc-bnn-fit": ("sfc-bnn", {"board": "ulx3s-85f"}, {"weights_in": "bram", "pipeline": True}, []),
    "sfc-mixed": ("sfc-mixed", {"board": "ulx3s-85f"}, {"weights_in": "bram", "pipeline": True}, ["ulx3s-85f"]),
    "int8-lenet5": ("int8-lenet5", {"cycles": 1024}, {"pipeline": True}, ["ulx3s-85f"]),
    "cnv-bnn": ("cnv-bnn", {"cycles": 784}, {"weights_in": "bram", "pipeline": True}, ["ulx3s-85f"]),
}


def _options(options: dict) -> list[str]:
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def _sim(folder: Path, *args: str) -> dict:
    """One fxp sim run and its record (exit status 2 is a bad request: stop there)."""
    status = fxp(["sim", str(folder), *args])
    if status == 2:
        raise SystemExit(f"fxp sim {folder} {' '.join(args)} was refused")
    simulator = args[args.index("--simulator") + 1]
    cpp = "--harness" in args and args[args.index("--harness") + 1] == "cpp"
    return json.loads((folder / f"sim_{simulator}{'_cpp' if cpp else ''}.json").read_text())


def run(name: str, models: Path, out: Path, cocotb: int, icarus: int, do_synth: bool, accuracy: dict) -> dict:
    model, folding, options, boards = NETWORKS[name]
    desc = models / model / "model.fxpm"
    if not desc.is_dir():
        raise SystemExit(f"{desc} is missing; train and export it first: python bench/bench_models.py --only {model}")
    folder = out / name / "hw"  # the network folder; the synthesis folders and bench.json beside it
    how = ["--cycles", str(folding["cycles"])] if "cycles" in folding else ["--board", folding["board"]]
    dataset = MODELS[model][1]
    if fxp(["gen", "model", str(desc), "--dataset", dataset, "--out", str(folder), "--force", *how,
            *_options(options)]) != 0:
        raise SystemExit(f"fxp gen model {desc} failed")
    sidecar = json.loads((folder / "fxp_network.json").read_text())
    row = {"name": name, "model": model, "folding": folding, "options": options,
           "cycles_per_frame_predicted": sidecar["cycles_per_frame"], "layers": sidecar["layers"],
           **accuracy.get(model, {})}
    row["cocotb_verilator"] = _sim(folder, "--simulator", "verilator", "--vectors", str(cocotb))
    row["cocotb_icarus"] = _sim(folder, "--simulator", "icarus", "--vectors", str(icarus))
    with tempfile.TemporaryDirectory() as cache:  # a fresh Verilator build is part of the time
        env = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache
        t = time.perf_counter()
        try:
            row["cpp"] = _sim(folder, "--simulator", "verilator", "--harness", "cpp", "--vectors", "100000")
        finally:
            os.environ.pop("XDG_CACHE_HOME") if env is None else os.environ.__setitem__("XDG_CACHE_HOME", env)
        row["cpp_wall_seconds"] = time.perf_counter() - t
    for rec in (row["cocotb_verilator"], row["cocotb_icarus"], row["cpp"]):
        rec.pop("log", None)
    row["mismatches"] = sum(row[k]["mismatches"] for k in ("cocotb_verilator", "cocotb_icarus", "cpp"))
    row["synth"] = {}
    if do_synth:
        verilog = (folder / "fxp_network.v").read_text()
        for board in boards:
            work = out / name / f"synth_{board}"
            shutil.rmtree(work, ignore_errors=True)
            t = time.perf_counter()
            try:
                stats = synth.synth_stats(verilog, "fxp_network", board, timeout=3600, workdir=work / "stats")
                # nextpnr's target: above what the design reaches (ECP5), so its Fmax is the design's, not
                # the target's; the iCEBreaker's the issue's bar, twice its clock
                pnr = synth.place_and_route(verilog, "fxp_network", board, timeout=5400, workdir=work / "pnr",
                                            freq_mhz=150 if board != "icebreaker" else 24)
                fps = pnr["fmax_mhz"] * 1e6 / row["cpp"]["cycles_per_frame_measured"]
                row["synth"][board] = {"yosys": Path(stats["yosys"]).name, "lut4": stats["lut4"], "ff": stats["ff"],
                                       "dsp": stats["dsp"],
                                       "bram": stats["bram"], "carry": stats.get("carry", 0),
                                       "fmax_mhz": pnr["fmax_mhz"], "frames_per_second": fps,
                                       "frames_per_second_per_lut4": fps / max(stats["lut4"], 1),
                                       "seconds": time.perf_counter() - t}
            except Exception as e:  # noqa: BLE001 - a board the design does not fit is a result, not a crash
                row["synth"][board] = {"error": str(e).splitlines()[0], "seconds": time.perf_counter() - t}
            print(name, board, row["synth"][board], flush=True)
    return row


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def markdown(rows: list[dict], args) -> str:
    lines = [f"Command: `python bench/bench_network.py --cocotb {args.cocotb} --icarus {args.icarus} --write-docs` "
             "(each network's latest run)  ",
             f"Machine: {machine()}; Yosys and nextpnr: {synth.tool_versions()}", "",
             "Verification (every output word compared with the golden model's; cocotb runs with random input "
             "gaps and output backpressure, 0.3 each; the C++ harness at full rate over the whole test set, its "
             "time including a fresh Verilator build):", "",
             "| network | folding | float | fake-quantized | golden | hardware | cocotb Verilator | cocotb Icarus | "
             "C++ harness (whole test set) | cycles/frame measured / predicted | C++ run, build included |",
             "|---|---|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for r in rows:
        fold = r["folding"].get("board") or f"{r['folding']['cycles']} cycles"
        cv, ci, cpp = r["cocotb_verilator"], r["cocotb_icarus"], r["cpp"]
        lines.append(
            f"| {r['name']} | {fold} | {_pct(r.get('float'))} | {_pct(r.get('fake_quantized'))} | "
            f"{_pct(cpp['golden_accuracy'])} | {_pct(cpp['hardware_accuracy'])} | {cv['mismatches']} mismatches of "
            f"{cv['images']:,} | {ci['mismatches']} of {ci['images']:,} | {cpp['mismatches']} of {cpp['images']:,} | "
            f"{cpp['cycles_per_frame_measured']:.1f} / {r['cycles_per_frame_predicted']} | "
            f"{r['cpp_wall_seconds']:.0f} s |")
    lines += ["", "Synthesis (Yosys cell counts of the accelerator alone; Fmax from nextpnr with the pin harness; "
              "frames/s = Fmax / measured cycles per frame). FINN's SFC-max: "
              f"{FINN_SFC_MAX['frames_per_second'] / 1e6:.1f} M frames/s on {FINN_SFC_MAX['lut']:,} LUT6, "
              f"{FINN_SFC_MAX['frames_per_second'] / FINN_SFC_MAX['lut']:.0f} frames/s per LUT.", "",
              "| network | board | Yosys | LUT4 | FF | DSP | BRAM | Fmax (MHz) | frames/s | frames/s per LUT4 |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for board, s in r["synth"].items():
            if "error" in s:
                lines.append(f"| {r['name']} | {board} | {s['error']} |||||||| ")
                continue
            lines.append(f"| {r['name']} | {board} | {s['yosys']} | {s['lut4']:,} | {s['ff']:,} | {s['dsp']} | {s['bram']} | "
                         f"{s['fmax_mhz']:.1f} | {s['frames_per_second']:,.0f} | "
                         f"{s['frames_per_second_per_lut4']:.1f} |")
    notes = [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/models", type=Path)
    ap.add_argument("--out", default="runs/networks", type=Path)
    add_only(ap, NETWORKS)
    ap.add_argument("--cocotb", type=int, default=1000, help="test images through cocotb on Verilator")
    ap.add_argument("--icarus", type=int, default=100, help="test images through cocotb on Icarus")
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--json", default="runs/bench/bench_network.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    names = only(args, NETWORKS)
    accuracy = {}  # what bench_models.py recorded of each trained model
    for model in {NETWORKS[name][0] for name in names}:
        recorded = args.models / model / "accuracy.json"
        if recorded.is_file():
            r = json.loads(recorded.read_text())
            accuracy[model] = {"float": r["float"], "fake_quantized": r["fake_quantized"]}
    for name in names:
        save_json(args.out / name / "bench.json", run(name, args.models, args.out, args.cocotb, args.icarus,
                                                      not args.no_synth, accuracy))
    # the tables: every network's latest run (this one's, and earlier --only runs' of the others)
    rows = [json.loads((args.out / name / "bench.json").read_text()) for name in NETWORKS
            if (args.out / name / "bench.json").is_file()]
    md = markdown(rows, args)
    print(md)
    save_json(args.json, {"machine": machine(), "rows": rows})
    if args.write_docs:
        write_section("bench_network", md)
    return 1 if any(r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
