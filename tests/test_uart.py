"""The 8N1 serial port in Amaranth's simulator: each end against a Python reference, then end to end."""

from __future__ import annotations

import gc
import itertools
import math
import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from fxp.errors import FxpError
from hdl_gen.uart import UartRx, UartTx
from sim.uart_protocol import decode_waveform, frame_bits


def waveform(frames: list[list[int]], period: float, idle: int = 20) -> list[int]:
    """The pin level for each cycle: ``idle`` cycles high, then the frames back to back, then idle again.

    Bit ``k`` of the sequence covers cycles ``[k·period, (k+1)·period)``, so a fractional period drifts
    against the receiver's whole-cycle divider as a real mismatched clock does.
    """
    bits = [b for f in frames for b in f]
    return [1] * idle + [bits[int(n / period)] for n in range(math.ceil(len(bits) * period))] + [1] * idle


def receive(rx: UartRx, levels: list[int], ready=lambda cycle: 1) -> dict:
    """Drive ``levels`` on ``rx.rx``, one per cycle; what came out of ``o`` and the flags, by cycle."""
    seen = {"bytes": [], "valid_cycles": [], "frame_error": [], "overrun": []}

    async def bench(ctx):
        for n, level in enumerate(levels):
            ctx.set(rx.rx, level)
            ctx.set(rx.o.ready, ready(n))
            _, _, valid, take, payload, frame_error, overrun = await ctx.tick().sample(
                rx.o.valid, rx.o.ready, rx.o.payload, rx.frame_error, rx.overrun)
            if valid and take:
                seen["bytes"].append(payload)
            for flag, value in (("frame_error", frame_error), ("overrun", overrun)):
                if value:
                    seen[flag].append(n)
            if ctx.get(rx.o.valid) and not valid:
                seen["valid_cycles"].append(n)  # o.valid first high after edge n

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("clock_hz, baud, divider", [(12_000_000, 115200, 104), (1_000_000, 100_000, 10)])
def test_loopback_with_random_gaps(clock_hz, baud, divider):
    rng = random.Random(divider)
    sent = [rng.randrange(256) for _ in range(20)]
    m = Module()
    m.submodules.tx = tx = UartTx(clock_hz, baud)
    m.submodules.rx = rx = UartRx(clock_hz, baud)
    assert tx.divider == rx.divider == divider
    m.d.comb += rx.rx.eq(tx.tx)
    got, line, flags = [], [], []

    async def producer(ctx):
        for k, byte in enumerate(sent):
            for _ in range(rng.choice([0, 0, rng.randrange(3 * divider)])):  # a third back to back
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
        for _ in range(11 * divider):  # the last frame, and the receiver's latency
            await ctx.tick()

    async def monitor(ctx):
        ctx.set(rx.o.ready, 1)
        async for _, _, level, valid, payload, frame_error, overrun in ctx.tick().sample(
                tx.tx, rx.o.valid, rx.o.payload, rx.frame_error, rx.overrun):
            line.append(level)
            if valid:
                got.append(payload)
            if frame_error or overrun:
                flags.append(len(line))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    decoded, starts = decode_waveform(line, divider)
    assert decoded == sent  # the transmitter against the reference receiver
    assert got == sent  # and end to end
    assert flags == []
    assert min(b - a for a, b in itertools.pairwise(starts)) == 10 * divider  # back to back: no idle between


@pytest.mark.parametrize("skew", [1.015, 0.985])
def test_reference_waveform_at_tolerance_edge(skew):
    rx = UartRx(12_000_000)
    sent = [0x55, 0xA5, 0x00, 0xFF, 0x01, 0x80]
    seen = receive(rx, waveform([frame_bits(b) for b in sent], rx.divider * skew))
    assert seen["bytes"] == sent
    assert seen["frame_error"] == seen["overrun"] == []


def test_waveform_far_off_is_not_received():
    """The bench can tell: a sender 8 % slow garbles the bytes."""
    rx = UartRx(12_000_000)
    sent = [0x55, 0xA5, 0x00, 0xFF]
    seen = receive(rx, waveform([frame_bits(b) for b in sent], rx.divider * 1.08))
    assert seen["bytes"] != sent


def test_latency_stop_bit_to_valid():
    for clock_hz, baud in [(12_000_000, 115200), (1_000_000, 100_000), (1_000_000, 200_000)]:
        rx = UartRx(clock_hz, baud)
        idle = 7
        seen = receive(rx, waveform([frame_bits(0x3C)], rx.divider, idle=idle) + [1] * 10)
        stop_edge = idle + 9 * rx.divider  # the first edge that sees the stop bit on the pin
        assert seen["bytes"] == [0x3C]
        assert seen["valid_cycles"] == [stop_edge + rx.divider // 2 + 2]


def test_framing_error_drops_byte_and_glitch_is_ignored():
    rx = UartRx(1_000_000, 100_000)
    d = rx.divider
    bad = waveform([frame_bits(0xC3, stop=0), [0, 0]], d, idle=5)  # stop bit low, line low two more bits
    glitch = [0] * (d // 2 - 2) + [1] * 3 * d  # shorter than half a bit
    good = waveform([frame_bits(0x5A)], d, idle=5)
    seen = receive(rx, bad + glitch + good)
    assert len(seen["frame_error"]) == 1  # once, though the line stays low after the bad stop bit
    assert seen["bytes"] == [0x5A]
    assert seen["overrun"] == []


def test_overrun_keeps_the_byte_on_offer():
    rx = UartRx(1_000_000, 100_000)
    levels = waveform([frame_bits(0x11), frame_bits(0x22), [1]], rx.divider)
    seen = receive(rx, levels + [1] * 5, ready=lambda n: int(n >= len(levels)))
    assert len(seen["overrun"]) == 1
    assert seen["bytes"] == [0x11]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # built only to read the timing
def test_divider_accepted_and_documented():
    rx = UartRx(12_000_000, 115200)
    assert (rx.divider, round(rx.actual_baud), round(rx.baud_error, 5)) == (104, 115385, 0.00160)
    tx = UartTx(12_000_000, 1_000_000)
    assert (tx.divider, tx.actual_baud, tx.baud_error) == (12, 1_000_000, 0)
    assert UartTx(1_000_000, 250_000).divider == 4  # the smallest divider allowed
    del rx, tx
    gc.collect()  # they warn when collected: here, under the filter


@pytest.mark.parametrize("cls", [UartRx, UartTx])
@pytest.mark.parametrize("clock_hz, baud, reason", [
    (10_000_000, 3_000_000, "3.33 cycles per bit"),  # divider 3 < 4
    (1_000_000, 115200, "divider 9, -3.55% off"),  # 111111 Bd
])
def test_divider_refused(cls, clock_hz, baud, reason):
    with pytest.raises(FxpError, match=reason) as refused:
        cls(clock_hz, baud)
    assert "\n" not in str(refused.value)
