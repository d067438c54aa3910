"""Run a stream unit in Amaranth's own simulator: random input gaps and output backpressure."""

from __future__ import annotations

import random


def run_stream(dut, inputs: list[int], n_outputs: int, seed: int = 0, gap: float = 0.3, stall: float = 0.3,
               max_cycles: int | None = None, vcd: str | None = None) -> list[int]:
    """Feed ``inputs`` to ``dut.i``, collect ``n_outputs`` words from ``dut.o`` (fewer if it stops)."""
    from amaranth import Value
    from amaranth.sim import Simulator

    rng = random.Random(seed)
    got: list[int] = []
    # the payloads as flat words, whatever their layout (lanes of a data.ArrayLayout, or plain bits)
    in_payload, out_payload = Value.cast(dut.i.payload), Value.cast(dut.o.payload)

    async def producer(ctx):
        for word in inputs:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(in_payload, word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < n_outputs:
            ctx.set(dut.o.ready, int(rng.random() >= stall))
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, out_payload)
            if valid and ready:
                got.append(int(payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    cycles = max_cycles or (len(inputs) + n_outputs) * 20 * max(1, getattr(dut, "sf", 1)) + 200
    if vcd:
        with sim.write_vcd(vcd):
            sim.run_until(1e-6 * cycles)
    else:
        sim.run_until(1e-6 * cycles)
    return got
