"""``fxp sim DIR``: replay golden-model vectors through a unit folder made by ``fxp gen unit``.

Random input vectors (seeded; the first ones are corner cases and, for MAC units, requantization
ties: :mod:`sim.stimulus`), the golden model's outputs as the expected words (packed by
:mod:`sim.lanes`, which refuses a value its lane cannot hold), and one of three simulators: Amaranth's
own (``amaranth``, rebuilt from ``layer.fxpm``), or the generated Verilog through cocotb on
``icarus`` or ``verilator`` (the wrapper ``<top>_top`` as top level), or Verilator with the C++
replay harness of :mod:`sim.replay` (``harness="cpp"``, millions of vectors). Every output word is
compared; the report names the first differing vector.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fxp import fxpm
from fxp.errors import FxpError
from fxp.resources import write_atomic
from hdl_gen.unit_folder import read_sidecar, sim_sources
from sim import golden
from sim.lanes import pack_lanes, words_to_ints
from sim.stimulus import block_rows, input_block, vectors

SIMULATORS = ("amaranth", "icarus", "verilator")
HARNESSES = ("cocotb", "cpp")


def run_unit_sim(folder: str | Path, simulator: str, n_vectors: int = 1000, seed: int = 0, waves: bool = False,
                 harness: str = "cocotb", gap: float | None = None, stall: float | None = None,
                 dataset: str | None = None) -> dict:
    """Replay ``n_vectors`` seeded vectors through the unit in ``folder``; the record also written as JSON.

    A network folder (``fxp gen model``) replays the first ``n_vectors`` test images of ``dataset``
    (default: the one it was made for) instead: :mod:`sim.network_run`.

    ``harness`` "cpp" replays through :mod:`sim.replay` (Verilator only) instead of cocotb; ``gap``
    and ``stall`` are the probabilities of idle input cycles and output backpressure (default 0.3 for
    the Python testbenches, 0 for the C++ harness, which is about speed).
    """
    folder = Path(folder)
    if simulator not in SIMULATORS:
        raise FxpError(f"simulator={simulator!r} is not known; use {', '.join(SIMULATORS)}")
    if harness not in HARNESSES:
        raise FxpError(f"harness={harness!r} is not known; use {' or '.join(HARNESSES)}")
    if harness == "cpp" and simulator != "verilator":
        raise FxpError(f"harness='cpp' runs on Verilator only, not {simulator}; use simulator='verilator'")
    if harness == "cpp" and waves:
        raise FxpError("waves=True needs the cocotb harness; use harness='cocotb' to record waveforms")
    if n_vectors < 1:
        raise FxpError(f"n_vectors must be at least 1, got {n_vectors}")
    if seed < 0:
        raise FxpError(f"seed must be 0 or more, got {seed}")
    for name, p in (("gap", gap), ("stall", stall)):
        if p is not None and not 0 <= p < 1:
            raise FxpError(f"{name} is a probability in [0, 1), got {p}")
    sidecar = read_sidecar(folder)
    if simulator == "amaranth" and sidecar.get("sim_models"):
        raise FxpError(f"{folder} holds a unit built on an FPGA primitive (simulation model: "
                       f"{', '.join(sidecar['sim_models'])}), which Amaranth's simulator cannot run; "
                       "use simulator='icarus' or 'verilator'")
    if sidecar["kind"] == "network":
        from sim.network_run import run_network

        rec = run_network(folder, sidecar, simulator, n_vectors, seed, waves, harness, gap, stall, dataset)
        _record(folder, simulator, harness, rec)
        return rec
    if dataset is not None:
        raise FxpError("a dataset is for network folders (fxp gen model); a unit replays seeded random vectors")
    model = fxpm.load(folder / "layer.fxpm")
    pe, nf = sidecar["pe"], sidecar["nf"]
    extra: dict = {}
    if harness == "cpp":
        from sim.replay import replay

        r = replay(folder, sidecar, model, n_vectors, seed, gap or 0.0, stall or 0.0)
        n_bad, first, got_word, received, seconds, log = (r["mismatches"], r["first"], r["got_word"], r["received"],
                                                          r["seconds"], r["log"])
        extra = {"build_seconds": r["build_seconds"], "rebuilt": r["rebuilt"],
                 "prepare_seconds": r["prepare_seconds"], "cycles": r["cycles"],
                 "cycles_per_second": r["cycles"] / seconds if seconds else None, "gap": gap or 0.0,
                 "stall": stall or 0.0, "seed": seed}
    else:
        got, exp_words, seconds, log, latency = _simulate_in_python(
            folder, sidecar, model, simulator, n_vectors, seed, waves,
            {k: v for k, v in (("gap", gap), ("stall", stall)) if v is not None})
        if latency is not None:  # measured by the cocotb testbench
            extra["latency_cycles"] = latency
        bad = [i for i, (a, b) in enumerate(zip(got, exp_words)) if a != b]
        n_bad, first, received = len(bad), (bad[0] if bad else None), len(got)
        got_word = got[first] if bad else None
    words = n_vectors * nf
    missing = max(words - received, 0)
    rec = {"simulator": simulator, "harness": harness, "unit": sidecar["top"], "vectors": n_vectors,
           "output_words": words, "mismatches": n_bad + missing, "missing_outputs": missing, "seconds": seconds,
           "vectors_per_second": n_vectors / seconds if seconds else None, "log": log, **extra}
    if first is None and missing:
        first = received
    if first is not None:
        v, n = divmod(first, nf)
        rows = block_rows(sidecar)
        x = input_block(sidecar, model, v // rows, seed)[v % rows : v % rows + 1]
        want = golden.run(model, x.astype(np.float64))[-1][0]
        rec["first_mismatch"] = {"vector": v, "output_transfer": n, "outputs": list(range(n * pe, (n + 1) * pe)),
                                 "expected": want[n * pe : (n + 1) * pe].tolist(), "got_word": got_word,
                                 "input": x[0].tolist()}
    _record(folder, simulator, harness, rec)
    return rec


def _record(folder: Path, simulator: str, harness: str, rec: dict) -> None:
    """The run's record, ``sim_<simulator>[_cpp].json`` in the folder (replacing the previous one)."""
    name = f"sim_{simulator}_cpp.json" if harness == "cpp" else f"sim_{simulator}.json"
    write_atomic(folder / name, json.dumps(rec, indent=2) + "\n")


def _simulate_in_python(folder: Path, sidecar: dict, model, simulator: str, n_vectors: int, seed: int, waves: bool,
                        stream_args: dict) -> tuple[list[int], list[int], float, str | None, int | None]:
    """Amaranth's simulator or cocotb: (output words, expected words, seconds, log, measured latency)."""
    x = vectors(sidecar, model, n_vectors, seed)
    want = golden.run(model, x.astype(np.float64))[-1]
    in_words = words_to_ints(pack_lanes(x, sidecar["in_lane_width"], sidecar["in_lane_signed"]))
    exp_words = words_to_ints(pack_lanes(want.reshape(-1, sidecar["pe"]), sidecar["out_lane_width"],
                                         sidecar["out_lane_signed"]))
    t = time.perf_counter()
    if simulator == "amaranth":
        from hdl_gen.engines import build_unit
        from sim.amaranth_runner import run_stream

        unit = build_unit(model, sidecar["layer"], sidecar["pe"], sidecar["simd"], sidecar.get("options"),
                          kind=sidecar["kind"])
        got = run_stream(unit, in_words, len(exp_words), seed=seed, vcd=str(folder / "amaranth.vcd") if waves else None,
                         **stream_args)
        log, latency = None, None
    else:
        from sim.cocotb_runner import run_stream_test

        ports = {k: k for k in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data")}
        r = run_stream_test([folder / name for name in sim_sources(sidecar)], sidecar["wrapper"], in_words,
                            exp_words, simulator, folder / f"sim_build_{simulator}", seed=seed,
                            cycles_per_output=sidecar["cycles_per_output"], waves=waves, ports=ports, **stream_args)
        got, log, latency = r["outputs"], r["log"], r["latency_cycles"]
    return got, exp_words, time.perf_counter() - t, log, latency
