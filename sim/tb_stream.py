"""cocotb testbench for any fxp stream unit (ports ``i__*``/``o__*`` of the unit, or the wrapper's
``in_*``/``out_*``; ``clk``, ``rst``).

Reads ``FXP_TB_CONFIG`` (JSON: input words, expected output words, gap and stall probabilities,
seed), drives the input stream with random gaps and the output with random backpressure, and checks
every output word against the expected one; a mismatch names the first differing output. It also
measures the latency: clock edges from the one that accepts the first input to the one that raises
the first ``out_valid`` (backpressure cannot delay that: nothing is held before a result is waiting).
Runs on Verilator and Icarus through :mod:`sim.cocotb_runner`.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def stream_matches_golden(dut):
    cfg = json.loads(open(os.environ["FXP_TB_CONFIG"]).read())
    inputs, expected = [int(w) for w in cfg["inputs"]], [int(w) for w in cfg["expected"]]
    rng = random.Random(cfg["seed"])
    names = cfg.get("ports", {})
    in_valid, in_ready, in_data = (getattr(dut, names.get(k, d)) for k, d in
                                   (("in_valid", "i__valid"), ("in_ready", "i__ready"), ("in_data", "i__payload")))
    out_valid, out_ready, out_data = (getattr(dut, names.get(k, d)) for k, d in
                                      (("out_valid", "o__valid"), ("out_ready", "o__ready"), ("out_data", "o__payload")))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    in_valid.value = 0
    out_ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    got: list[int] = []
    edges = {"now": 0, "accepted": None, "raised": None}  # clock edges since reset; the first accept and out_valid

    async def drive():
        for word in inputs:
            while rng.random() < cfg["gap"]:
                in_valid.value = 0
                await RisingEdge(dut.clk)
            in_data.value = word
            in_valid.value = 1
            while True:
                await ReadOnly()
                taken = int(in_ready.value)
                if taken and edges["accepted"] is None:
                    edges["accepted"] = edges["now"] + 1  # the coming edge takes it
                await RisingEdge(dut.clk)
                if taken:
                    break
        in_valid.value = 0

    cocotb.start_soon(drive())
    limit = 50 * (len(expected) + len(inputs)) * cfg.get("cycles_per_output", 1) + 100
    for _ in range(limit):
        if len(got) == len(expected):
            break
        out_ready.value = int(rng.random() >= cfg["stall"])
        await ReadOnly()
        if int(out_valid.value) and edges["raised"] is None:
            edges["raised"] = edges["now"]
        if int(out_valid.value) and int(out_ready.value):
            got.append(int(out_data.value))
        await RisingEdge(dut.clk)
        edges["now"] += 1
    latency = None if None in (edges["accepted"], edges["raised"]) else edges["raised"] - edges["accepted"]
    with open(os.environ["FXP_TB_RESULT"], "w") as fh:
        json.dump({"outputs": got, "latency_cycles": latency}, fh)
    assert len(got) == len(expected), f"only {len(got)} of {len(expected)} outputs arrived"
    bad = [n for n, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not bad, f"{len(bad)} mismatches; first at output {bad[0]}: got {got[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
