"""cocotb testbench for any fxp stream unit (ports ``i__*``, ``o__*``, ``clk``, ``rst``).

Reads ``FXP_TB_CONFIG`` (JSON: input words, expected output words, gap and stall probabilities,
seed), drives the input stream with random gaps and the output with random backpressure, and checks
every output word against the expected one; a mismatch names the first differing output.
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
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    got: list[int] = []

    async def drive():
        for word in inputs:
            while rng.random() < cfg["gap"]:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__payload.value = word
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if taken:
                    break
        dut.i__valid.value = 0

    cocotb.start_soon(drive())
    limit = 50 * (len(expected) + len(inputs)) * cfg.get("cycles_per_output", 1) + 100
    for _ in range(limit):
        if len(got) == len(expected):
            break
        dut.o__ready.value = int(rng.random() >= cfg["stall"])
        await ReadOnly()
        if int(dut.o__valid.value) and int(dut.o__ready.value):
            got.append(int(dut.o__payload.value))
        await RisingEdge(dut.clk)
    with open(os.environ["FXP_TB_RESULT"], "w") as fh:
        json.dump({"outputs": got}, fh)
    assert len(got) == len(expected), f"only {len(got)} of {len(expected)} outputs arrived"
    bad = [n for n, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not bad, f"{len(bad)} mismatches; first at output {bad[0]}: got {got[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
