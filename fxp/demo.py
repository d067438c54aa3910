"""``fxp demo``: the whole flow on the embedded digits data, with no flags, into one report.

1. train the digits BNN in the dynamic fixed-point simulator (``fixed`` mode: every non-binary
   tensor with its own power-of-two scale), with its float baseline;
2. export the integer model description (``model.fxpm``);
3. the golden model against the PyTorch integer path (``fxp predict``);
4. generate the accelerator and its board top for the board (``fxp gen model --board``), folded for
   :data:`CYCLES` cycles a frame;
5. verify it bit-exactly in Verilator over the whole digits test set (``fxp sim --harness cpp``);
6. the board top over a pseudo-terminal, bit by bit on its serial pins (``fxp run --sim``), the
   whole test set again, as a host sees a board;
7. the bitstream with YoWASP Yosys and nextpnr (``fxp build``);
8. ``report.html``, ``report.md`` and ``report.json``: the accuracy at every stage (float,
   fake-quantized, golden, hardware, board over the serial port), the folding, utilisation, Fmax and
   frames/s, with plots.

Each step writes into its own folder under ``out`` (``train/``, ``model.fxpm``, ``hw/``), so a
reader can rerun any one of them with the command the report names.
"""

from __future__ import annotations

import html
import json
import sys
import time
from pathlib import Path

from fxp.errors import FxpError
from fxp.resources import render, write_atomic

MODEL, DATASET, BOARD = "bnn_digits", "digits", "icebreaker"
# One frame every 16 cycles: the iCEBreaker's 5,280 logic cells hold the digits BNN with its serial
# top at this folding with room to spare (3,326 cells, Fmax 49.7 MHz measured). At 4 cycles one
# trained model took 5,209 cells (98.7 %) and another did not fit: too close to the edge for any seed.
CYCLES = 16
RECIPE = {"batch_size": 64, "optimizer": "adam", "lr": 0.01}  # the BNN's recipe in bench/bench_models.py
REPORT_FILES = ("report.html", "report.md", "report.json", "accuracy.png", "utilization.png", "confusion.png",
                "curves.png")


def _commands(out: Path, board: str, epochs: int, seed: int) -> dict[str, str]:
    """The command line that does each step by hand."""
    r = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPE.items())
    return {
        "train": f"fxp train --model {MODEL} --dataset {DATASET} --mode fixed --epochs {epochs} --seed {seed} {r} "
                 f"--baseline --out {out}/train",
        "export": f"fxp export {out}/train --out {out}/model.fxpm",
        "predict": f"fxp predict {out}/model.fxpm --dataset {DATASET} --run {out}/train",
        "generate": f"fxp gen model {out}/model.fxpm --dataset {DATASET} --board {board} --cycles {CYCLES} "
                    f"--pipeline --out {out}/hw",
        "verify": f"fxp sim {out}/hw --simulator verilator --harness cpp --vectors 100000",
        "serial": f"fxp run --sim {out}/hw",
        "build": f"fxp build {out}/hw",
    }


def run_demo(out: str | Path = "runs/demo", *, board: str = BOARD, epochs: int = 15, seed: int = 0,
             bitstream: bool = True, force: bool = False, progress: bool = True) -> dict:
    """The flow above into ``out``; the report's record. Without ``bitstream`` step 7 is skipped."""
    from fxp.datasets import load
    from fxp.export import export
    from fxp.layers import FxConfig
    from fxp.train import Recipe, run_train
    from hdl_gen.boards import load_board
    from hdl_gen.gen import generate_network
    from sim.predict import run_predict
    from sim.run import run_unit_sim
    from sim.serial_host import run as run_serial

    out = Path(out)
    target = load_board(board)  # an unknown board is refused before anything runs
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FxpError(f"{out} already holds files; give another --out or replace it (--force)")
        if not (out / "report.json").is_file() and not (out / "train").is_dir():
            raise FxpError(f"{out} holds files that are not a demo's; give a new or empty folder")
    data = load(DATASET)
    commands = _commands(out, board, epochs, seed)
    rec: dict = {"model": MODEL, "dataset": DATASET, "board": board, "board_description": target.description,
                 "epochs": epochs, "seed": seed, "commands": commands, "seconds": {}}
    hw = out / "hw"

    def train():
        cfg, recipe = FxConfig(mode="fixed"), Recipe(epochs=epochs, seed=seed, **RECIPE)
        m = run_train(MODEL, data, cfg, recipe, out / "train", baseline=True, progress=progress, force=True)
        rec["train"] = {"fixed": m["test_accuracy"], "float": m["float_baseline"]["test_accuracy"],
                        "seconds": m["seconds"]}

    def export_step():
        export(out / "train", out / "model.fxpm", force=True)

    def predict():
        p = run_predict(out / "model.fxpm", data, run=out / "train")
        rec["predict"] = {k: p[k] for k in ("golden_accuracy", "fake_quantized_accuracy", "integer_mismatches",
                                            "integer_outputs_compared", "images")}

    def generate():
        side = generate_network(out / "model.fxpm", hw, levels=data.levels, dataset=DATASET, cycles=CYCLES,
                                board=board, options={"pipeline": True}, force=True)
        rec["folding"] = {"cycles_per_frame": side["cycles_per_frame"], "layers": side["layers"]}

    def verify():
        r = run_unit_sim(hw, "verilator", 1 << 30, harness="cpp")
        rec["verify"] = {k: r.get(k) for k in ("images", "mismatches", "golden_accuracy", "hardware_accuracy",
                                               "cycles_per_frame_predicted", "cycles_per_frame_measured",
                                               "seconds", "build_seconds")}
        if r["mismatches"]:
            raise FxpError(f"the accelerator differs from the golden model on {r['mismatches']} test images; "
                           f"see {hw}/sim_verilator_cpp.json and report this as a bug")

    def serial():
        r = run_serial(hw, None, None, None, progress=False)
        write_atomic(hw / "run_sim.json", json.dumps(r, indent=2) + "\n")
        rec["serial"] = {k: r[k] for k in ("images", "mismatches", "accuracy", "golden_accuracy", "baud", "seconds",
                                           "build_seconds")}
        rec["serial"]["cycles"] = r["harness"].get("cycles")
        rec["predictions"] = r["predictions"]
        if r["mismatches"]:
            raise FxpError(f"the board top's replies differ from the golden model on {r['mismatches']} images; "
                           f"see {hw}/run_sim.json and report this as a bug")

    def build():
        from hdl_gen.board_build import build as build_bitstream

        rec["build"] = build_bitstream(hw, progress=progress)

    steps = [("train", train), ("export", export_step), ("predict", predict), ("generate", generate),
             ("verify", verify), ("serial", serial)] + ([("build", build)] if bitstream else [])
    for name in (n for n in REPORT_FILES if (out / n).exists()):
        (out / name).unlink()  # a failed run leaves no report of an earlier one
    for k, (name, step) in enumerate(steps, 1):
        if progress:  # each step's own progress (epochs, the build's tools) follows its line
            print(f"demo step {k}/{len(steps)}, {name}: {commands[name] if name in commands else ''}",
                  file=sys.stderr, flush=True)
        t = time.perf_counter()
        step()
        rec["seconds"][name] = round(time.perf_counter() - t, 1)
    write_report(out, rec, data)
    return rec


def write_report(out: Path, rec: dict, data) -> None:
    """``report.json``, ``report.md``, ``report.html`` and their PNG figures."""
    import shutil

    from fxp import plots

    accuracy = {"float baseline": rec["train"]["float"],
                "fake-quantized (PyTorch)": rec["predict"]["fake_quantized_accuracy"],
                "golden model (integers)": rec["predict"]["golden_accuracy"],
                "hardware (Verilator)": rec["verify"]["hardware_accuracy"],
                "board over serial (simulated)": rec["serial"]["accuracy"]}
    rec["accuracy"] = accuracy
    figures = {"accuracy.png": plots.accuracy_bars(accuracy),
               "confusion.png": plots.confusion(data.y_test.numpy(), rec["predictions"], 10)}
    if "build" in rec:
        used = {bel: (u["used"], u["available"]) for bel, u in rec["build"]["utilization"].items()}
        figures["utilization.png"] = plots.utilization_bars(used)
    for name, png in figures.items():
        write_atomic(out / name, png)
    shutil.copyfile(out / "train" / "curves.png", out / "curves.png")
    images = ["curves.png", *figures]
    layers = rec["folding"]["layers"]
    context = {"r": rec, "accuracy": accuracy, "layers": layers, "images": images, "esc": html.escape}
    write_atomic(out / "report.md", render("demo_report.md.j2", **context))
    write_atomic(out / "report.html", render("demo_report.html.j2", **context))
    saved = {k: v for k, v in rec.items() if k != "predictions"}
    write_atomic(out / "report.json", json.dumps(saved, indent=2) + "\n")
