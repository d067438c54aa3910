"""The int8 MAC unit in Amaranth's simulator against the golden model's dense layer."""

import numpy as np
import pytest
from test_hdl_xnor import simulate

from fxp import fxpm
from hdl_gen.mac import MacUnit
from sim import golden


def dense_model(seed, mw, mh, zero_points, pow2, relu):
    rng = np.random.default_rng(seed)
    spec = {"format": "fxpm", "version": 1, "name": "d",
            "input": {"shape": [mw], "quantizer": {"kind": "fixed", "format": "s8.0"}},
            "layers": [{"name": "fc", "op": "dense", "out_features": mh, "input_format": "s8.0", "weight_format": "s8.0",
                        "output_format": "s8.0", "acc_bits": 32, "relu": relu,
                        "input_zero_point": int(rng.integers(-20, 20)) if zero_points else 0,
                        "output_zero_point": int(rng.integers(-20, 20)) if zero_points else 0,
                        "weights": "w", "bias": "b", "multiplier": "m", "shift": "s"}]}
    arrays = {"w": rng.integers(-128, 128, (mh, mw)).astype(np.int8),
              "b": rng.integers(-3000, 3000, mh).astype(np.int32)}
    if zero_points:
        spec["layers"][0]["weight_zero_point"] = "wz"
        arrays["wz"] = rng.integers(-10, 10, mh).astype(np.int32)
    if pow2:
        arrays["m"], arrays["s"] = np.ones(mh, np.int64), rng.integers(6, 10, mh).astype(np.int64)
    else:
        arrays["m"], arrays["s"] = rng.integers(1 << 30, 1 << 31, mh).astype(np.int64), rng.integers(37, 41, mh).astype(np.int64)
    return fxpm.Model(spec, arrays)


def lanes_to_signed(words, pe):
    out = []
    for g in words:
        for p in range(pe):
            v = (int(g) >> (8 * p)) & 0xFF
            out.append(v - 256 if v >= 128 else v)
    return out


@pytest.mark.parametrize("mw,mh,pe,simd,zp,pow2,relu", [
    (8, 4, 4, 8, False, True, True),     # fully parallel
    (8, 4, 1, 1, True, False, False),    # fully folded, affine, multiplier + shift
    (12, 6, 2, 3, True, True, True),
    (16, 4, 2, 4, False, False, True),
    (8, 6, 2, 8, False, True, False),    # folded over outputs only (NF = 3, SF = 1)
    (16, 2, 2, 8, True, False, True),    # folded over inputs only (NF = 1, SF = 2)
])
def test_mac_unit_matches_golden(mw, mh, pe, simd, zp, pow2, relu):
    model = dense_model(mw * 10 + mh, mw, mh, zp, pow2, relu)
    dut = MacUnit.from_layer(model, "fc", pe=pe, simd=simd)
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (10, mw))
    x[0], x[1] = -128, 127  # int8 extremes: the largest products
    want = golden.run(model, x.astype(np.float64))[-1]
    vectors_bits = np.array([[(int(v) >> b) & 1 for v in row for b in range(8)] for row in x])
    got = simulate(dut, vectors_bits)  # lanes of 8 bits as unsigned, PE per transfer
    got_signed = np.where(got >= 128, got - 256, got)
    assert np.array_equal(got_signed, want)


def test_a_wrong_bias_is_caught():
    model = dense_model(5, 8, 4, False, False, False)
    x = np.random.default_rng(2).integers(-128, 128, (6, 8))
    want = golden.run(model, x.astype(np.float64))[-1]
    model.arrays["b"] = model.arrays["b"].copy()
    model.arrays["b"][1] += 1 << 20
    bits = np.array([[(int(v) >> b) & 1 for v in row for b in range(8)] for row in x])
    got = simulate(MacUnit.from_layer(model, "fc", pe=2, simd=4), bits)
    got = np.where(got >= 128, got - 256, got)
    assert not np.array_equal(got, want) and np.argwhere(got != want)[0][1] == 1


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_mac_unit_on_verilog_simulators_and_lint(tmp_path, simulator):
    model = dense_model(9, 8, 4, True, False, True)
    verilog_matches_golden(tmp_path, model, MacUnit.from_layer(model, "fc", pe=2, simd=4), simulator)


def verilog_matches_golden(tmp_path, model, dut, simulator):
    """``dut`` (PE = 2) emitted as Verilog: linted, and bit-exact against the golden model on ``simulator``."""
    from hdl_gen.verilog import emit
    from sim.cocotb_runner import run_stream_test
    from sim.tools import lint

    x = np.random.default_rng(3).integers(-128, 128, (16, dut.mw))
    x[0], x[1] = -128, 127
    want = golden.run(model, x.astype(np.float64))[-1]
    words_in = [sum((int(v) & 0xFF) << (8 * k) for k, v in enumerate(row)) for row in x]
    words_out = [sum((int(v) & 0xFF) << (8 * p) for p, v in enumerate(row[n * 2 : n * 2 + 2]))
                 for row in want for n in range(dut.mh // 2)]
    verilog = emit(dut, "mac_unit")
    (tmp_path / "mac_unit.v").write_text(verilog)
    rc, messages = lint(tmp_path / "mac_unit.v", "mac_unit")
    assert rc == 0, messages
    r = run_stream_test(verilog, "mac_unit", words_in, words_out, simulator, tmp_path / "b", cycles_per_output=dut.sf)
    assert r["passed"] and r["outputs"] == words_out


@pytest.mark.parametrize("options", [dict(pipeline=True), dict(weights_in="bram"), dict(weights_in="bram", pipeline=True)],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("mw,mh,pe,simd,pow2", [(8, 4, 4, 8, False), (8, 4, 1, 1, True), (12, 6, 2, 3, False)])
def test_pipelined_and_bram_mac_matches_golden(mw, mh, pe, simd, pow2, options):
    from test_hdl_xnor import first_output_cycle

    model = dense_model(mw + mh, mw, mh, True, pow2, True)
    dut = MacUnit.from_layer(model, "fc", pe=pe, simd=simd, **options)
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (10, mw))
    x[0], x[1] = -128, 127
    want = golden.run(model, x.astype(np.float64))[-1]
    assert np.array_equal(simulate_signed(dut, x, seed=pe), want)
    assert first_output_cycle(MacUnit.from_layer(model, "fc", pe=pe, simd=simd, **options), 7) == dut.latency


def shared_model(seed, mw, mh, zero_points, pow2, values=(-128, -37, 0, 5, 90, 127)):
    """A dense layer whose weights take only ``values`` (a k-means shared layer after export)."""
    model = dense_model(seed, mw, mh, zero_points, pow2, True)
    rng = np.random.default_rng(seed)
    model.arrays["w"] = np.asarray(values, np.int8)[rng.integers(0, len(values), (mh, mw))]
    return model


def simulate_signed(dut, x, seed=0):
    got = simulate(dut, np.array([[(int(v) >> b) & 1 for v in row for b in range(8)] for row in x]), seed=seed)
    return np.where(got >= 128, got - 256, got)


@pytest.mark.parametrize("options", [{}, dict(weights_in="bram", pipeline=True)],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "logic")
@pytest.mark.parametrize("mw,mh,pe,simd,zp", [(8, 4, 1, 1, False), (12, 6, 2, 3, True), (8, 4, 4, 8, False)])
def test_codebook_mac_matches_golden(mw, mh, pe, simd, zp, options):
    from test_hdl_xnor import first_output_cycle

    model = shared_model(mw * 7 + mh, mw, mh, zp, pow2=not zp)
    dut = MacUnit.from_layer(model, "fc", pe=pe, simd=simd, codebook=True, **options)
    w = model.arrays["w"].astype(np.int64)
    distinct = np.unique(w - (model.arrays["wz"][:, None] if zp else 0))
    # six values: 3-bit indices; less per-output zero points, up to 6 x 6 differences
    assert dut.table.tolist() == distinct.tolist() and dut.stored_bits == max(1, (len(distinct) - 1).bit_length())
    assert dut.stored_bits < dut.w_bits
    x = np.random.default_rng(4).integers(-128, 128, (10, mw))
    x[0], x[1] = -128, 127
    want = golden.run(model, x.astype(np.float64))[-1]
    assert np.array_equal(simulate_signed(dut, x, seed=pe), want)
    assert first_output_cycle(MacUnit.from_layer(model, "fc", pe=pe, simd=simd, codebook=True, **options), 7) == dut.latency


def test_a_wrong_codebook_is_caught():
    model = shared_model(11, 8, 4, False, True)
    x = np.random.default_rng(5).integers(-128, 128, (6, 8))
    want = golden.run(model, x.astype(np.float64))[-1]
    dut = MacUnit.from_layer(model, "fc", pe=2, simd=4, codebook=True)
    dut.table = dut.table.copy()
    dut.table[[1, 2]] = dut.table[[2, 1]]  # two entries swapped: the indices now select the wrong weights
    assert not np.array_equal(simulate_signed(dut, x), want)


@pytest.mark.parametrize("zp,bits", [(False, 8), (True, 9)])
def test_codebook_kept_only_where_it_saves_bits(zp, bits):
    """Every int8 weight in each row: 8-bit indices (more than 256 differences with zero points, 9 bits), no
    fewer than the values take: the layer keeps its values."""
    model = dense_model(3, 256, 4, zp, True, True)
    model.arrays["w"] = np.tile(np.arange(-128, 128, dtype=np.int8), (4, 1))
    dut = MacUnit.from_layer(model, "fc", pe=1, simd=1, codebook=True)
    assert dut.table is None and dut.stored_bits == dut.w_bits == bits
    assert MacUnit.weight_storage(model.op("fc"), codebook=True) == (bits, 0)
    shared = shared_model(3, 256, 4, zp, True)
    assert MacUnit.weight_storage(shared.op("fc"), codebook=True)[0] < MacUnit.weight_storage(shared.op("fc"))[0]


def test_codebook_mac_in_verilator(tmp_path):
    """The table lookup as emitted Verilog: linted (a full case), and bit-exact on Verilator."""
    model = shared_model(9, 8, 4, True, False)
    dut = MacUnit.from_layer(model, "fc", pe=2, simd=4, codebook=True, weights_in="bram")
    assert dut.table is not None
    verilog_matches_golden(tmp_path, model, dut, "verilator")
