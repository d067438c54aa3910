"""``fxp sim DIR``: replay golden-model vectors through a unit folder made by ``fxp gen unit``.

Random input vectors (seeded; the first ones are corner cases: all −1 / all +1 bits, or int8 −128 /
127), the golden model's outputs as the expected words, and one of three simulators: Amaranth's
own (``amaranth``, rebuilt from ``layer.fxpm``), or the generated Verilog through cocotb on
``icarus`` or ``verilator`` (the wrapper ``<top>_top`` as top level). Every output word is compared;
the report names the first differing vector.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fxp import fxpm
from fxp.errors import FxpError
from fxp.resources import write_atomic
from sim import golden

SIMULATORS = ("amaranth", "icarus", "verilator")


def _sidecar(folder: Path) -> dict:
    cars = [p for p in folder.glob("*.json") if not p.name.startswith("sim_")]
    if len(cars) != 1 or not (folder / "layer.fxpm").is_dir():
        raise FxpError(f"{folder} is not a unit folder (one sidecar .json and layer.fxpm); make one with fxp gen unit")
    return json.loads(cars[0].read_text())


def vectors(car: dict, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if car["kind"] == "xnor":
        x = rng.integers(0, 2, (n, car["mw"]))
        corners = [np.zeros(car["mw"]), np.ones(car["mw"])]
    else:
        x = rng.integers(-128, 128, (n, car["mw"]))
        corners = [np.full(car["mw"], -128), np.full(car["mw"], 127)]
    for i, c in enumerate(corners[: n]):
        x[i] = c
    return x


def pack(values: np.ndarray, width: int) -> int:
    return sum((int(v) & ((1 << width) - 1)) << (k * width) for k, v in enumerate(values))


def run_unit_sim(folder: str | Path, simulator: str, n_vectors: int = 1000, seed: int = 0, waves: bool = False) -> dict:
    folder = Path(folder)
    if simulator not in SIMULATORS:
        raise FxpError(f"--simulator {simulator!r} is not known; use {', '.join(SIMULATORS)}")
    if n_vectors < 1:
        raise FxpError(f"--vectors must be at least 1, got {n_vectors}")
    car = _sidecar(folder)
    model = fxpm.load(folder / "layer.fxpm")
    x = vectors(car, n_vectors, seed)
    want = golden.run(model, x.astype(np.float64))[-1]
    pe, nf, lw = car["pe"], car["nf"], car["out_lane_width"]
    in_words = [pack(v, car["in_lane_width"]) for v in x]
    exp_words = [pack(row[n * pe : (n + 1) * pe], lw) for row in want for n in range(nf)]
    t = time.perf_counter()
    if simulator == "amaranth":
        from hdl_gen.gen import build_unit
        from sim.amaranth_runner import run_stream

        unit = build_unit(car["kind"], model, car["layer"], car["pe"], car["simd"])
        got = run_stream(unit, in_words, len(exp_words), seed=seed, vcd=str(folder / "amaranth.vcd") if waves else None)
        log = None
    else:
        from sim.cocotb_runner import run_stream_test

        ports = {k: k for k in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data")}
        r = run_stream_test([folder / f"{car['top']}.v", folder / f"{car['top']}_top.v"], car["wrapper"], in_words,
                            exp_words, simulator, folder / f"sim_build_{simulator}", seed=seed,
                            cycles_per_output=car["cycles_per_output"], waves=waves, ports=ports)
        got, log = r["outputs"], r["log"]
    seconds = time.perf_counter() - t
    bad = [i for i, (a, b) in enumerate(zip(got, exp_words)) if a != b]
    missing = len(exp_words) - len(got)
    rec = {"simulator": simulator, "unit": car["top"], "vectors": n_vectors, "output_words": len(exp_words),
           "mismatches": len(bad) + max(missing, 0), "missing_outputs": max(missing, 0), "seconds": seconds,
           "vectors_per_second": n_vectors / seconds if seconds else None, "log": log}
    if bad or missing > 0:
        i = bad[0] if bad else len(got)
        v, n = divmod(i, nf)
        rec["first_mismatch"] = {"vector": v, "output_transfer": n, "outputs": list(range(n * pe, (n + 1) * pe)),
                                 "expected": want[v, n * pe : (n + 1) * pe].tolist(),
                                 "got_word": got[i] if i < len(got) else None, "input": x[v].tolist()}
    write_atomic(folder / f"sim_{simulator}.json", json.dumps(rec, indent=2) + "\n")
    return rec
