"""The XNOR-popcount unit in Amaranth's simulator, against the golden model, with gaps and backpressure."""

import gc

import numpy as np
import pytest
from amaranth import Value
from descriptions import random_bnn

from fxp import FxpError, fxpm
from hdl_gen.xnor import XnorPopcountUnit
from sim import golden


def simulate(dut, vectors: np.ndarray, seed: int = 0, gap: float = 0.3, stall: float = 0.3):
    """Run vectors of bits (bit k of the payload is column k) and return the lanes, one row per vector."""
    from sim.amaranth_runner import run_stream

    words = [int("".join(str(int(b)) for b in v[::-1]), 2) for v in vectors]
    n_out = len(vectors) * dut.nf
    got = run_stream(dut, words, n_out, seed=seed, gap=gap, stall=stall)
    assert len(got) == n_out, f"only {len(got)} of {n_out} outputs arrived"
    lw = getattr(dut, "lane_width", 8)
    lanes = np.array([[(g >> (p * lw)) & ((1 << lw) - 1) for p in range(dut.pe)] for g in got])
    return lanes.reshape(len(vectors), dut.mh)


def expected(weights, thresholds, vectors):
    """The golden model's outputs for a one-layer binary_dense description of these weights and thresholds."""
    mh, mw = weights.shape
    layer = {"name": "layer", "op": "binary_dense", "out_features": mh, "weights": "w"}
    arrays = {"w": np.packbits(np.asarray(weights, np.uint8), axis=1, bitorder="little")}
    if thresholds is not None:
        layer["threshold"] = "t"
        arrays["t"] = np.asarray(thresholds, np.int32)
    spec = {"format": "fxpm", "version": 1, "name": "unit",
            "input": {"shape": [mw], "quantizer": {"kind": "binarize", "threshold": 0.5}}, "layers": [layer]}
    return golden.run(fxpm.Model(spec, arrays), np.asarray(vectors, np.float64))[-1]


@pytest.mark.parametrize("mw,mh,pe,simd,thr", [
    (16, 4, 4, 16, True),    # fully parallel: PE = MH, SIMD = MW
    (16, 4, 1, 1, True),     # fully folded: PE = SIMD = 1
    (24, 6, 2, 8, False),    # raw popcounts
    (32, 8, 4, 4, True),
    (16, 8, 2, 16, True),    # folded over outputs only (NF = 4, SF = 1)
    (32, 4, 4, 16, False),   # folded over inputs only (NF = 1, SF = 2)
    (12, 4, 2, 6, True),     # NF = SF = 2: the last-slice and last-group flags set from the first step
])
def test_unit_matches_golden_with_backpressure(mw, mh, pe, simd, thr):
    rng = np.random.default_rng(mw * 100 + mh)
    w = rng.integers(0, 2, (mh, mw))
    t = rng.integers(0, mw + 2, mh) if thr else None
    vectors = rng.integers(0, 2, (12, mw))
    vectors[0] = 0  # corner cases: all -1, all +1, equal to a weight row
    vectors[1] = 1
    vectors[2] = w[0]
    dut = XnorPopcountUnit(w, t, pe, simd)
    assert np.array_equal(simulate(dut, vectors), expected(w, t, vectors))


VARIANTS = [{"pipeline": True}, {"weights_in": "bram"}, {"weights_in": "bram", "pipeline": True},
            {"popcount": "chain"}, {"weights_in": "bram", "table_bits": 9}, {"weights_in": "bram", "table_bits": 9, "pipeline": True}]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("mw,mh,pe,simd", [(16, 4, 4, 16), (16, 4, 1, 1), (40, 6, 2, 8)])
def test_pipelined_and_bram_variants_match_golden(mw, mh, pe, simd, options):
    rng = np.random.default_rng(mw + mh + pe)
    w = rng.integers(0, 2, (mh, mw))
    vectors = rng.integers(0, 2, (10, mw))
    vectors[0], vectors[1] = 0, 1
    for t in (rng.integers(0, mw + 2, mh), None):
        dut = XnorPopcountUnit(w, t, pe, simd, **options)
        assert np.array_equal(simulate(dut, vectors, seed=pe), expected(w, t, vectors)), t is None


TABLES = {"weights_in": "bram", "table_bits": 4}


@pytest.mark.parametrize("mw,simd,pe,options", [
    (mw, simd, pe, options) for mw, simd, pe in [(1, 1, 3), (2, 2, 4), (4, 4, 6), (6, 6, 8), (7, 7, 9), (6, 3, 8),
                                                  (7, 1, 9), (6, 3, 2), (7, 7, 3)]
    for options in ({}, {"pipeline": True})
] + [(6, 6, 8, TABLES), (7, 7, 9, {**TABLES, "pipeline": True}), (6, 6, 2, TABLES)])
def test_thresholds_are_the_top_bit_of_an_offset_sum(mw, simd, pe, options):
    """A lane's output is bit W of popcount + 2^W - T: offsets in the compressor where nothing is
    folded, else the accumulator's start (a ROM word where NF > 1). Every threshold 0..MW+1 (MW = 7:
    T = 8 = 2^W, offset 0) on an output of its own, against every input vector."""
    mh = mw + 2
    w = np.random.default_rng(mw + simd).integers(0, 2, (mh, mw))
    t = np.arange(mh)
    vectors = (np.arange(1 << mw)[:, None] >> np.arange(mw)) & 1
    dut = XnorPopcountUnit(w, t, pe, simd, **options)
    assert bool(dut._tree_offsets) == (dut.nf == dut.sf == 1) and dut._offsets is not None
    assert np.array_equal(simulate(dut, vectors, gap=0.1, stall=0.1), expected(w, t, vectors))
    assert first_output_cycle(dut, 5) == dut.latency  # the offsets' constant bits can add a compressor layer
    for p in (0, mw):  # each alone: PE = 1, nothing shared
        one = XnorPopcountUnit(w[p : p + 1], t[p : p + 1], 1, simd, **options)
        assert np.array_equal(simulate(one, vectors), expected(w[p : p + 1], t[p : p + 1], vectors))
        assert first_output_cycle(one, 5) == one.latency


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # units built to read an attribute
@pytest.mark.parametrize("mw", [18, 19, 20])  # 3-input groups with no tail, a 1-bit and a 2-bit tail
@pytest.mark.parametrize("pipeline", [False, True])
def test_outputs_share_counters_when_weights_are_constants(mw, pipeline):
    rng = np.random.default_rng(mw)
    w = rng.integers(0, 2, (6, mw))
    w[1], w[2] = 1 - w[0], w[0]  # a complement (the inverted counters) and a repeat (the same counters)
    dut = XnorPopcountUnit(w, None, 6, mw, pipeline=pipeline)
    # one counter per group and weight pattern up to complement (XOR with the group's first weight);
    # rows 0-2 share theirs
    distinct = {(g, tuple(r[g : g + 3] ^ r[g])) for r in w for g in range(0, mw - mw % 3, 3)}
    assert dut.shared and dut.counters == len(distinct)
    counters, plan = dut._plan  # each counter has the pattern most of its outputs use: at most half invert it
    for counter in counters:
        masks = [mask for leaves in plan for src, mask in leaves if src == counter]
        assert 2 * masks.count(3) <= len(masks), counter
    vectors = rng.integers(0, 2, (16, mw))
    vectors[0], vectors[1], vectors[2], vectors[3] = 0, 1, w[0], w[1]
    assert np.array_equal(simulate(dut, vectors, seed=mw), expected(w, None, vectors))
    assert not XnorPopcountUnit(w, None, 6, mw // 2 if mw % 2 == 0 else 1).shared  # folded: weights change
    gc.collect()  # that unit, built only to be asked, warns when collected: here, under the filter


def first_output_cycle(dut, word: int) -> int:
    """Cycles from the edge that accepts ``word`` to the edge after which ``o.valid`` is first high."""
    from amaranth.sim import Simulator

    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(Value.cast(dut.i.payload), word)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()  # reset released: the unit is ready, this edge accepts
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 200):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                seen.append(cycle)
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen[0]


@pytest.mark.parametrize("options", [{}, *VARIANTS[:3]], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_latency_attribute_is_the_simulated_latency(options):
    w = np.random.default_rng(0).integers(0, 2, (4, 64))
    for pe, simd in ((4, 64), (2, 16), (1, 1)):
        dut = XnorPopcountUnit(w, None, pe, simd, **options)
        assert first_output_cycle(dut, 12345) == dut.latency, (pe, simd)


def test_unit_from_an_exported_description():
    model = random_bnn(3, sizes=(32, 16, 8))
    dut = XnorPopcountUnit.from_layer(model, "b0", pe=4, simd=8)
    rng = np.random.default_rng(1)
    vectors = rng.integers(0, 2, (6, 32))
    w = np.unpackbits(model.arrays["b0.w"], axis=1, count=32, bitorder="little")
    assert np.array_equal(simulate(dut, vectors, gap=0.5, stall=0.5), expected(w, model.arrays["b0.t"], vectors))


def test_a_wrong_weight_is_caught():
    rng = np.random.default_rng(7)
    w = rng.integers(0, 2, (4, 16))
    vectors = rng.integers(0, 2, (8, 16))
    bad = w.copy()
    bad[2, 5] ^= 1
    got = simulate(XnorPopcountUnit(bad, None, 2, 8), vectors)
    diff = np.argwhere(got != expected(w, None, vectors))
    assert len(diff) and diff[0][1] == 2  # the first differing vector is named by its output row


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_folding_is_checked():
    w = np.zeros((6, 16), dtype=int)
    with pytest.raises(FxpError, match="MH=6 is not a multiple of PE=4"):
        XnorPopcountUnit(w, None, 4, 8)
    with pytest.raises(FxpError, match="MW=16 is not a multiple of SIMD=5"):
        XnorPopcountUnit(w, None, 2, 5)
    with pytest.raises(FxpError, match="weights_in='rom' is not known; use logic or bram or dp16kd"):
        XnorPopcountUnit(w, None, 2, 8, weights_in="rom")


@pytest.mark.parametrize("pe,tables", [(1, 6), (2, 3)])
@pytest.mark.parametrize("pipeline", [False, True])
def test_count_tables_in_block_ram(pe, tables, pipeline):
    """NF x SF = 8 folds take 3 of the 9 address bits. With one lane a table reads 3 inputs of each of
    the SF = 2 slices (6 tables, no slice mux), with two lanes 6 inputs of the current slice (3 tables)."""
    rng = np.random.default_rng(pe)
    w, t = rng.integers(0, 2, (4 * pe, 32)), rng.integers(0, 34, 4 * pe)
    vectors = rng.integers(0, 2, (12, 32))
    vectors[0], vectors[1], vectors[2] = 0, 1, w[1]
    dut = XnorPopcountUnit(w, t, pe, 16, weights_in="bram", table_bits=9, pipeline=pipeline)
    assert dut.tables == tables and dut.table_bits == 9
    assert np.array_equal(simulate(dut, vectors, seed=pe), expected(w, t, vectors))
    assert first_output_cycle(XnorPopcountUnit(w, t, pe, 16, weights_in="bram", table_bits=9, pipeline=pipeline), 99) == dut.latency
    # a count one off in one table entry is caught
    bad = XnorPopcountUnit(w, None, pe, 16, weights_in="bram", table_bits=9, pipeline=pipeline)
    assert bad.nf * bad.sf == 8  # fold 1 of 8 is an eighth of each table, and issued for every vector
    words = bad._table_words

    def off_by_one(j0, k):
        out = words(j0, k)
        if j0 == 0:  # the first table, fold 1 (of 8): lane 0's count one off, whatever the inputs
            for a in range(len(out) // 8, len(out) // 4):
                out[a] ^= 1
        return out

    bad._table_words = off_by_one
    assert not np.array_equal(simulate(bad, vectors, seed=pe), expected(w, None, vectors))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_table_options_are_checked():
    w = np.zeros((16, 16), dtype=int)
    with pytest.raises(FxpError, match="table_bits=8 leaves no address bit for inputs beside the 8 .* raise table_bits"):
        XnorPopcountUnit(w, None, 1, 1, weights_in="bram", table_bits=8)
    with pytest.raises(FxpError, match="table_bits must be a whole number from 1 to 16"):
        XnorPopcountUnit(w, None, 4, 16, weights_in="bram", table_bits=0)
    with pytest.raises(FxpError, match=r"table_bits must be a whole number from 1 to 9 \(.*512 words in a DP16KD\), got 10"):
        XnorPopcountUnit(w, None, 4, 16, weights_in="dp16kd", table_bits=10)
    with pytest.raises(FxpError, match="count tables .* live in block RAM; use weights_in='bram' or 'dp16kd'"):
        XnorPopcountUnit(w, None, 4, 16, table_bits=9)
    with pytest.raises(FxpError, match="popcount='chain' is for weight words"):
        XnorPopcountUnit(w, None, 4, 16, weights_in="bram", table_bits=9, popcount="chain")
    gc.collect()  # the half-built units warn when collected: here, under the filter, not at exit


@pytest.mark.parametrize("thr", [True, False])
def test_verilog_is_deterministic_and_lints_clean(tmp_path, thr):
    from hdl_gen.verilog import emit
    from sim.tools import lint

    rng = np.random.default_rng(0)
    w, t = rng.integers(0, 2, (8, 32)), (rng.integers(0, 34, 8) if thr else None)
    if thr:
        t[0], t[1] = 0, 33  # the extremes: always and never
    a = emit(XnorPopcountUnit(w, t, 4, 8), "xnor_unit")
    assert a == emit(XnorPopcountUnit(w, t, 4, 8), "xnor_unit")
    # every variant, folded and fully parallel (where ROMs and thresholds become constants)
    for pe, simd in ((4, 8), (8, 32)):
        for options in [{}, *VARIANTS]:
            (tmp_path / "xnor_unit.v").write_text(emit(XnorPopcountUnit(w, t, pe, simd, **options), "xnor_unit"))
            rc, messages = lint(tmp_path / "xnor_unit.v", "xnor_unit")
            assert rc == 0, (pe, simd, options, messages)
    # and lint can fail: a width truncation it is not told to waive
    (tmp_path / "bad.v").write_text("module bad(input [7:0] a, output [3:0] y); assign y = a; endmodule\n")
    rc, messages = lint(tmp_path / "bad.v", "bad")
    assert rc != 0 and "WIDTHTRUNC" in messages


def _words(vectors):
    return [int("".join(str(int(b)) for b in v[::-1]), 2) for v in vectors]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_cocotb_on_verilog_simulators(tmp_path, simulator):
    from hdl_gen.verilog import emit
    from sim.cocotb_runner import run_stream_test

    rng = np.random.default_rng(11)
    w, t = rng.integers(0, 2, (8, 32)), rng.integers(0, 34, 8)
    vectors = rng.integers(0, 2, (20, 32))
    vectors[0], vectors[1] = 0, 1
    dut = XnorPopcountUnit(w, t, 4, 8)
    exp = expected(w, t, vectors).reshape(-1, dut.nf, dut.pe)
    exp_words = [sum(int(b) << p for p, b in enumerate(lanes)) for v in exp for lanes in v]
    verilog = emit(dut, "xnor_unit")
    r = run_stream_test(verilog, "xnor_unit", _words(vectors), exp_words, simulator, tmp_path / "ok",
                        cycles_per_output=dut.sf)
    assert r["passed"] and r["outputs"] == exp_words
    # the same bench fails on a unit with one wrong threshold, naming the first differing output
    t_bad = t.copy()
    t_bad[3] = (t_bad[3] + 7) % 34
    bad = run_stream_test(emit(XnorPopcountUnit(w, t_bad, 4, 8), "xnor_unit"), "xnor_unit", _words(vectors),
                          exp_words, simulator, tmp_path / "bad", cycles_per_output=dut.sf)
    assert not bad["passed"]
    with open(bad["log"]) as log:
        assert "first at output" in log.read()


@pytest.mark.parametrize("width", [1, 3, 5])
def test_at_least_a_constant_is_exact(width):
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from hdl_gen.xnor import at_least

    x = Signal(width)
    thresholds = range((1 << width) + 2)  # past the top: never true
    outs = [Signal(name=f"ge{t}") for t in thresholds]
    m = Module()
    m.d.comb += [o.eq(at_least(x, t)) for o, t in zip(outs, thresholds)]
    got = {}

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(x, v)
            got[v] = [ctx.get(o) for o in outs]

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == {v: [int(v >= t) for t in thresholds] for v in range(1 << width)}
    with pytest.raises(FxpError, match="threshold of 0 or more"):
        at_least(x, -1)


@pytest.mark.parametrize("widths,every,first,inverted", [
    ([1] * 13, 0, None, False), ([2] * 7 + [1, 1], 2, None, True), ([2] * 21 + [1], 2, 1, True),
    ([3, 1, 5, 2, 2, 4, 1], 1, None, True), ([1] * 64, 3, None, False)])
def test_compressor_tree_sums_terms_and_counts_its_cuts(widths, every, first, inverted):
    """The carry-save compressor on terms of mixed widths (some given as ``(value, mask)``, inverted
    through the registers), its sum checked in simulation against Python's, and its pipeline
    registers counted as compressor_cuts says (the cut here only counts its calls)."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from hdl_gen.compressor import compressor_cuts, compressor_trees

    m, cuts = Module(), []
    terms = [Signal(w, name=f"t{i}") for i, w in enumerate(widths)]
    masks = [(0b101 * (i + 1)) % (1 << w) if inverted else 0 for i, w in enumerate(widths)]
    assert not inverted or len(set(masks)) > 1

    def cut(values):
        cuts.append(len(values))
        return values

    total = Signal(16)
    given = [(t, k) if i % 2 else t ^ k for i, (t, k) in enumerate(zip(terms, masks))]  # both spellings
    m.d.comb += total.eq(compressor_trees(m, [given], cut if every else None, every, first)[0])
    assert len(cuts) == compressor_cuts(widths, every, first) and (len(cuts) > 0) == (every > 0)
    rng = np.random.default_rng(len(widths))
    cases = [[(1 << w) - 1 for w in widths], [0] * len(widths)]
    cases += [[int(rng.integers(0, 1 << w)) for w in widths] for _ in range(40)]

    async def bench(ctx):
        for case in cases:
            for t, v in zip(terms, case):
                ctx.set(t, v)
            assert ctx.get(total) == sum(v ^ k for v, k in zip(case, masks)), case

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
