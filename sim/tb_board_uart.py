"""cocotb testbench for a board top (:mod:`hdl_gen.board_top`, ports ``clk``, ``rst``, ``rx``, ``tx``) over
its serial pins: real 8N1 frames from cocotbext-uart, as a PC's serial port would send them.

Reads ``FXP_TB_CONFIG`` (JSON, written by :mod:`sim.board_uart`): the clock period, the baud rate, the
byte chunks to send (each a request, some with noise bytes before it), an idle gap before each chunk,
the reply expected for each request and a deadline. A ``UartSource`` drives ``rx`` at the nominal baud
rate, not the design's ``clock / divider``: the host's serial port does not know the board's divider.
Idle gaps of odd lengths put start bits at every phase of the clock. The sender keeps at most
``in_flight`` requests without a complete reply (the protocol's limit: the board top holds that many
flags, and a serial port cannot push back). A ``UartSink`` reads ``tx``; the replies are cut by their
expected lengths, written to ``FXP_TB_RESULT`` and compared byte for byte.

cocotbext-uart 0.1.4 runs on cocotb 2.1 as it is: it passes Timer units positionally (cocotb 2 deprecates
``units=`` for ``unit=``), starts its coroutines with ``cocotb.start_soon`` and sets the idle level with
``setimmediatevalue``, deprecated in cocotb 2 but still working (its DeprecationWarning is silenced
below). Two of its habits are worked around here, not patched: it logs every byte at INFO (thousands of
lines a run: its loggers go to WARNING), and ``UartSink.read(n)`` raises ``QueueEmpty`` when fewer than
``n`` bytes are queued (so everything queued is read and the replies are cut here).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

warnings.filterwarnings("ignore", message=r"Use `handle\.set\(Immediate", category=DeprecationWarning,
                        module=r"cocotbext\.uart")


@cocotb.test()
async def replies_match_golden(dut):
    cfg = json.loads(Path(os.environ["FXP_TB_CONFIG"]).read_text())
    chunks = [bytes.fromhex(c) for c in cfg["chunks"]]
    expected = [bytes.fromhex(r) for r in cfg["replies"]]
    period = cfg["clock_period_ps"]
    cocotb.start_soon(Clock(dut.clk, period, unit="ps", period_high=period // 2).start())
    dut.rst.value = 1
    dut.rx.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    source = UartSource(dut.rx, baud=cfg["baud"], bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=cfg["baud"], bits=8, stop_bits=1)
    for end in (source, sink):
        end.log.setLevel(logging.WARNING)
    replies: list[bytes] = []
    progress = Event()  # set whenever a reply is complete

    async def send():
        for k, chunk in enumerate(chunks):
            while len(replies) < k + 1 - cfg["in_flight"]:
                progress.clear()
                await progress.wait()
            if cfg["gaps_ns"][k]:
                await source.wait()  # the line idles from the end of the last stop bit
                await Timer(cfg["gaps_ns"][k], "ns")
            await source.write(chunk)

    async def receive():
        buffer = bytearray()
        while len(replies) < len(expected):
            buffer += await sink.read()  # everything queued: read(n) fails when fewer than n are
            while len(replies) < len(expected) and len(buffer) >= len(expected[len(replies)]):
                n = len(expected[len(replies)])
                replies.append(bytes(buffer[:n]))
                del buffer[:n]
                progress.set()
        return bytes(buffer)

    cocotb.start_soon(send())
    timed_out, extra = False, b""
    try:
        extra = await with_timeout(receive(), cfg["deadline_ns"], "ns")
        await Timer(cfg["tail_ns"], "ns")  # anything after the last reply is an error too
        extra += bytes(sink.read_nowait())
    except SimTimeoutError:
        timed_out = True
    Path(os.environ["FXP_TB_RESULT"]).write_text(json.dumps({
        "replies": [r.hex() for r in replies], "extra": extra.hex(), "timed_out": timed_out,
        "sim_ns": get_sim_time("ns")}))
    assert not timed_out, f"only {len(replies)} of {len(expected)} replies arrived by {cfg['deadline_ns']} ns"
    bad = [k for k, (a, b) in enumerate(zip(replies, expected)) if a != b]
    assert not bad, f"{len(bad)} replies differ; first to request {bad[0]}: got {replies[bad[0]].hex()}, " \
                    f"expected {expected[bad[0]].hex()}"
    assert not extra, f"{len(extra)} bytes after the last reply: {extra[:16].hex()}"
