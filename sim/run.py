"""``fxp sim DIR``: replay golden-model vectors through a unit folder made by ``fxp gen unit``.

Random input vectors (seeded; the first ones are corner cases: all −1 / all +1 bits, or int8 −128 /
127), the golden model's outputs as the expected words, and one of three simulators: Amaranth's
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
from sim import golden

SIMULATORS = ("amaranth", "icarus", "verilator")


def _sidecar(folder: Path) -> dict:
    cars = [p for p in folder.glob("*.json") if not p.name.startswith("sim_")]
    if len(cars) != 1 or not (folder / "layer.fxpm").is_dir():
        raise FxpError(f"{folder} is not a unit folder (one sidecar .json and layer.fxpm); make one with fxp gen unit")
    return json.loads(cars[0].read_text())


def sim_sources(car: dict) -> list[str]:
    """The Verilog files of a unit folder that a simulator compiles: unit, wrapper, primitive models."""
    return [f"{car['top']}.v", f"{car['wrapper']}.v", *car.get("sim_models", [])]


# Random vectors come in blocks, each seeded by (seed, block number): any block can be made again on
# its own (the replay harness names a failing vector out of millions), and a block holds about 2**21
# lanes whatever the width, which bounds the memory of the golden model's float64 input.
BLOCK_LANES = 1 << 21


def block_rows(car: dict) -> int:
    """Vectors per block of :func:`input_block` for this unit."""
    return max(1, BLOCK_LANES // car["in_lanes"])


def input_block(car: dict, block: int, seed: int) -> np.ndarray:
    """Block ``block`` of the seeded input stream as packed bytes, (rows, ceil(in_width / 8)) uint8.

    Lanes are packed little-endian as on ``in_data``: xnor bits LSB first, mac int8 lanes as bytes.
    The stream starts with the corner cases (all −1 / all +1 bits, or all −128 / all 127).
    """
    rng = np.random.default_rng([seed, block])
    rows, mw = block_rows(car), car["mw"]
    if car["kind"] == "xnor":
        raw = rng.integers(0, 256, (rows, -(-mw // 8)), dtype=np.uint8)
        corners = [0x00, 0xFF]
    elif car["kind"] == "mac":
        raw = rng.integers(-128, 128, (rows, mw), dtype=np.int8).view(np.uint8)
        corners = [0x80, 0x7F]  # −128, 127
    else:
        raise FxpError(f"unit kind {car['kind']!r} has no vector generator; use a unit made by fxp gen unit")
    if block == 0:
        raw[: len(corners)] = np.array(corners[:rows], np.uint8)[:, None]
    if car["kind"] == "xnor" and mw % 8:
        raw[:, -1] &= (1 << (mw % 8)) - 1
    return raw


def unpack_lanes(car: dict, raw: np.ndarray) -> np.ndarray:
    """Packed input bytes (rows, bytes) → lane values (rows, MW) int64: 0/1 bits or signed int8."""
    if car["kind"] == "xnor":
        return np.unpackbits(raw, axis=1, count=car["mw"], bitorder="little").astype(np.int64)
    return raw.view(np.int8).astype(np.int64)


def vectors(car: dict, n: int, seed: int) -> np.ndarray:
    """The first ``n`` vectors of the seeded input stream as lane values (n, MW) int64."""
    rows = block_rows(car)
    return np.concatenate([unpack_lanes(car, input_block(car, b, seed)[: n - b * rows])
                           for b in range(-(-n // rows))])


def pack_lanes(values: np.ndarray, width: int) -> np.ndarray:
    """Lane values (rows, lanes) of ``width`` bits → 32-bit words (rows, ceil(lanes·width / 32)) uint32.

    Lane k at bits [k·width, (k+1)·width), little-endian, as on the wrapper's ports; negative values
    are taken in two's complement.
    """
    rows, lanes = values.shape
    if width in (8, 16, 32, 64):  # whole bytes: the little-endian integers are the packing
        raw = np.ascontiguousarray(values.astype(f"<u{width // 8}")).view(np.uint8).reshape(rows, -1)
    else:
        bits = np.empty((rows, lanes, width), np.uint8)  # one bit plane at a time: no int64 (rows, lanes, width)
        for b in range(width):
            bits[:, :, b] = (values >> b) & 1
        raw = np.packbits(bits.reshape(rows, lanes * width), axis=1, bitorder="little")
    return pad_words(raw)


def pad_words(raw: np.ndarray) -> np.ndarray:
    """Bytes (rows, k) → uint32 little-endian words (rows, ceil(k / 4)), zero-padded."""
    pad = (-raw.shape[1]) % 4
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    return np.ascontiguousarray(raw).view("<u4")


def words_to_ints(words: np.ndarray) -> list[int]:
    """uint32 word rows → one Python integer per row (the port value)."""
    return [int.from_bytes(r.tobytes(), "little") for r in words]


HARNESSES = ("cocotb", "cpp")


def run_unit_sim(folder: str | Path, simulator: str, n_vectors: int = 1000, seed: int = 0, waves: bool = False,
                 harness: str = "cocotb", gap: float | None = None, stall: float | None = None) -> dict:
    """Replay ``n_vectors`` seeded vectors through the unit in ``folder``; the record also written as JSON.

    ``harness`` "cpp" replays through :mod:`sim.replay` (Verilator only) instead of cocotb; ``gap``
    and ``stall`` are the probabilities of idle input cycles and output backpressure (default 0.3 for
    the Python testbenches, 0 for the C++ harness, which is about speed).
    """
    folder = Path(folder)
    if simulator not in SIMULATORS:
        raise FxpError(f"--simulator {simulator!r} is not known; use {', '.join(SIMULATORS)}")
    if harness not in HARNESSES:
        raise FxpError(f"--harness {harness!r} is not known; use {' or '.join(HARNESSES)}")
    if harness == "cpp" and simulator != "verilator":
        raise FxpError(f"--harness cpp runs on Verilator only, not {simulator}; add --simulator verilator")
    if harness == "cpp" and waves:
        raise FxpError("--waves needs the cocotb harness; drop --harness cpp to record waveforms")
    if n_vectors < 1:
        raise FxpError(f"--vectors must be at least 1, got {n_vectors}")
    if seed < 0:
        raise FxpError(f"--seed must be 0 or more, got {seed}")
    for name, p in (("gap", gap), ("stall", stall)):
        if p is not None and not 0 <= p < 1:
            raise FxpError(f"--{name} is a probability in [0, 1), got {p}")
    car = _sidecar(folder)
    if simulator == "amaranth" and car.get("sim_models"):
        raise FxpError(f"{folder} holds a unit built on an FPGA primitive (simulation model: "
                       f"{', '.join(car['sim_models'])}), which Amaranth's simulator cannot run; "
                       "use --simulator icarus or verilator")
    model = fxpm.load(folder / "layer.fxpm")
    pe, nf = car["pe"], car["nf"]
    extra: dict = {}
    if harness == "cpp":
        from sim.replay import replay

        r = replay(folder, car, model, n_vectors, seed, gap or 0.0, stall or 0.0)
        n_bad, first, got_word, received, seconds, log = (r["mismatches"], r["first"], r["got_word"], r["received"],
                                                          r["seconds"], r["log"])
        extra = {"build_seconds": r["build_seconds"], "rebuilt": r["rebuilt"],
                 "prepare_seconds": r["prepare_seconds"], "cycles": r["cycles"],
                 "cycles_per_second": r["cycles"] / seconds if seconds else None, "gap": gap or 0.0,
                 "stall": stall or 0.0, "seed": seed}
    else:
        got, exp_words, seconds, log, latency = _simulate_in_python(
            folder, car, model, simulator, n_vectors, seed, waves,
            {k: v for k, v in (("gap", gap), ("stall", stall)) if v is not None})
        if latency is not None:  # measured by the cocotb testbench
            extra["latency_cycles"] = latency
        bad = [i for i, (a, b) in enumerate(zip(got, exp_words)) if a != b]
        n_bad, first, received = len(bad), (bad[0] if bad else None), len(got)
        got_word = got[first] if bad else None
    words = n_vectors * nf
    missing = max(words - received, 0)
    rec = {"simulator": simulator, "harness": harness, "unit": car["top"], "vectors": n_vectors,
           "output_words": words, "mismatches": n_bad + missing, "missing_outputs": missing, "seconds": seconds,
           "vectors_per_second": n_vectors / seconds if seconds else None, "log": log, **extra}
    if first is None and missing:
        first = received
    if first is not None:
        v, n = divmod(first, nf)
        rows = block_rows(car)
        x = unpack_lanes(car, input_block(car, v // rows, seed)[v % rows : v % rows + 1])
        want = golden.run(model, x.astype(np.float64))[-1][0]
        rec["first_mismatch"] = {"vector": v, "output_transfer": n, "outputs": list(range(n * pe, (n + 1) * pe)),
                                 "expected": want[n * pe : (n + 1) * pe].tolist(), "got_word": got_word,
                                 "input": x[0].tolist()}
    name = f"sim_{simulator}_cpp.json" if harness == "cpp" else f"sim_{simulator}.json"
    write_atomic(folder / name, json.dumps(rec, indent=2) + "\n")
    return rec


def _simulate_in_python(folder: Path, car: dict, model, simulator: str, n_vectors: int, seed: int, waves: bool,
                        stream_args: dict) -> tuple[list[int], list[int], float, str | None, int | None]:
    """Amaranth's simulator or cocotb: (output words, expected words, seconds, log, measured latency)."""
    x = vectors(car, n_vectors, seed)
    want = golden.run(model, x.astype(np.float64))[-1]
    in_words = words_to_ints(pack_lanes(x, car["in_lane_width"]))
    exp_words = words_to_ints(pack_lanes(want.reshape(-1, car["pe"]), car["out_lane_width"]))
    t = time.perf_counter()
    if simulator == "amaranth":
        from hdl_gen.gen import build_unit
        from sim.amaranth_runner import run_stream

        unit = build_unit(car["kind"], model, car["layer"], car["pe"], car["simd"], car.get("options"))
        got = run_stream(unit, in_words, len(exp_words), seed=seed, vcd=str(folder / "amaranth.vcd") if waves else None,
                         **stream_args)
        log, latency = None, None
    else:
        from sim.cocotb_runner import run_stream_test

        ports = {k: k for k in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data")}
        r = run_stream_test([folder / name for name in sim_sources(car)], car["wrapper"], in_words,
                            exp_words, simulator, folder / f"sim_build_{simulator}", seed=seed,
                            cycles_per_output=car["cycles_per_output"], waves=waves, ports=ports, **stream_args)
        got, log, latency = r["outputs"], r["log"], r["latency_cycles"]
    return got, exp_words, time.perf_counter() - t, log, latency
