"""The MAC unit takes every format an integer layer may have, and fxp sim cannot be fooled by a unit
that does not: wide outputs, unsigned and wide inputs and weights, requantization ties in the stimulus,
and mutants (a unit that drops high bits, one that reads unsigned lanes as signed) that must fail."""

import json

import numpy as np
import pytest

from fxp import fxpm
from fxp.cli import main
from fxp.format import Format
from hdl_gen import mac
from hdl_gen.gen import random_layer
from sim import golden
from sim.stimulus import requantization_ties, vectors


def dense(in_fmt="s8.0", w_fmt="s8.0", out_fmt="s8.0", mw=8, mh=4, seed=0, relu=False, mult=None, shift=None,
          zero_points=False):
    """A one-layer dense description with the given formats; power-of-two requantization unless told."""
    rng = np.random.default_rng(seed)
    fi, fw, fo = (Format.parse(f) for f in (in_fmt, w_fmt, out_fmt))
    layer = {"name": "fc", "op": "dense", "out_features": mh, "input_format": in_fmt, "weight_format": w_fmt,
             "output_format": out_fmt, "acc_bits": 32, "relu": relu,
             "input_zero_point": int(rng.integers(fi.raw_min, fi.raw_max + 1)) if zero_points else 0,
             "output_zero_point": int(rng.integers(fo.raw_min // 4, fo.raw_max // 4 + 1)) if zero_points else 0,
             "weights": "w", "bias": "b", "multiplier": "m", "shift": "s"}
    arrays = {"w": rng.integers(fw.raw_min, fw.raw_max + 1, (mh, mw)).astype(np.int8 if fw.word_bits <= 8 else np.int16),
              "b": rng.integers(-3000, 3000, mh).astype(np.int32),
              "m": np.asarray(mult if mult is not None else np.ones(mh), np.int64),
              "s": np.asarray(shift if shift is not None else np.full(mh, 6), np.int64)}
    if zero_points:
        layer["weight_zero_point"] = "wz"
        arrays["wz"] = rng.integers(fw.raw_min, fw.raw_max + 1, mh).astype(np.int32)
    spec = {"format": "fxpm", "version": 1, "name": "d",
            "input": {"shape": [mw], "quantizer": {"kind": "fixed", "format": in_fmt}}, "layers": [layer]}
    return fxpm.Model(spec, arrays)


def _unit(tmp_path, model, *options, pe=4, simd=8, name="u"):
    fxpm.save(tmp_path / f"{name}.fxpm", model.spec, model.arrays)
    out = tmp_path / name
    assert main(["gen", "unit", "--from", str(tmp_path / f"{name}.fxpm"), "--layer", "fc", "--pe", str(pe),
                 "--simd", str(simd), "--out", str(out), *options]) == 0
    return out, json.loads((out / "fxp_mac.json").read_text())


def test_the_issues_wide_output_example(tmp_path):
    """Output s16.0, PE=4, SIMD=8, all inputs -128: the unit sends the golden values, not their low bytes."""
    model = dense(out_fmt="s16.0", mw=8, mh=4, seed=3, shift=np.full(4, 2))
    out, sidecar = _unit(tmp_path, model)
    assert (sidecar["out_lane_width"], sidecar["out_lane_signed"], sidecar["out_width"]) == (16, True, 64)
    want = golden.run(model, np.full((1, 8), -128.0))[-1][0]
    assert np.abs(want).max() > 127  # the case the 8-bit lanes got wrong
    for sim in ("amaranth", "icarus"):
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "60"]) == 0, sim
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "20000"]) == 0


@pytest.mark.parametrize("in_fmt,w_fmt,out_fmt,zp", [
    ("u8.0", "s8.0", "s8.0", False), ("u8.3", "s8.5", "u8.0", True), ("s10.4", "s12.6", "s10.2", False),
    ("s16.0", "s8.0", "s16.0", True), ("u4.0", "s3.0", "u5.0", True), ("s1.0", "u1.0", "s2.0", False),
])
@pytest.mark.parametrize("options", [[], ["--pipeline", "--weights-in", "bram"]])
def test_every_width_and_signedness(tmp_path, in_fmt, w_fmt, out_fmt, zp, options):
    """Formats of 1..16 bits, signed or not, with and without zero points: bit-exact on Amaranth and Icarus,
    with the full range of the input lanes in the stimulus (for u8: 128..255, read as unsigned)."""
    model = dense(in_fmt, w_fmt, out_fmt, mw=6, mh=4, seed=7, zero_points=zp, shift=np.array([0, 3, 5, 9]),
                  mult=np.array([1, 3, 1, 5]))
    out, sidecar = _unit(tmp_path, model, *options, pe=2, simd=3)
    fi, fo = Format.parse(in_fmt), Format.parse(out_fmt)
    assert (sidecar["in_lane_width"], sidecar["in_lane_signed"]) == (fi.word_bits, fi.signed)
    assert (sidecar["out_lane_width"], sidecar["out_lane_signed"]) == (fo.word_bits, fo.signed)
    layer = fxpm.load(out / "layer.fxpm").layers[0]
    assert layer["input_format"] == str(Format(fi.word_bits, 0, fi.signed))  # the source's word and signedness
    x = vectors(sidecar, fxpm.load(out / "layer.fxpm"), 200, 0)
    assert x.min() == fi.raw_min and x.max() == fi.raw_max
    # the unit folder's layer computes what the source layer computes on the same raw inputs
    src = golden.run(model, x * 2.0 ** -fi.frac_bits)[-1]
    assert np.array_equal(golden.run(fxpm.load(out / "layer.fxpm"), x.astype(np.float64))[-1], src)
    for sim in ("amaranth", "icarus"):
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "50"]) == 0, sim


def test_default_training_reaches_the_mac_engine(tmp_path):
    """fxp train with default options (fixed mode: 10-bit activations, 12-bit weights), fxp export, then a
    MAC unit for every dense layer, simulated bit-exactly."""
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--limit-train", "200", "--quiet", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "m.fxpm")]) == 0
    model = fxpm.load(tmp_path / "m.fxpm")
    dense_layers = [x for x in model.layers if x["op"] == "dense"]
    assert {x["input_format"][:4] for x in dense_layers[1:]} == {"s10."}  # wider than the old 8-bit lanes
    for layer in dense_layers:
        out = tmp_path / layer["name"]
        assert main(["gen", "unit", "--from", str(tmp_path / "m.fxpm"), "--layer", layer["name"], "--pe", "2",
                     "--simd", "4", "--out", str(out)]) == 0
        assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "30"]) == 0


@pytest.mark.parametrize("path,mult,shift", [
    ("uniform shift", np.ones(4), np.full(4, 7)),                # the path of every dynamic fixed-point export
    ("per-channel shifts", np.ones(4), np.array([3, 7, 1, 10])),  # a barrel shifter per lane
    ("multipliers", np.array([3, 5, 1, 7]), np.array([6, 9, 4, 8])),
    ("power-of-two multipliers and shift 0", np.array([4, 1, 2, 1]), np.array([5, 0, 3, 6])),
])
def test_stimulus_hits_ties_that_matter_on_every_path(path, mult, shift):
    """One vector per output lands its accumulator exactly halfway (acc·M ≡ 2**(S-1) mod 2**S) with both
    neighbouring results inside the clamp, so a unit rounding ties the other way differs."""
    model = dense(mw=12, mh=4, seed=11, mult=mult, shift=shift, relu=True, out_fmt="s8.0")
    ties = requantization_ties(model, -128, 127)
    w = model.arrays["w"].astype(np.int64)
    hit = set()
    for x in ties:
        for o in range(4):
            acc = sum(int(a) * int(b) for a, b in zip(x, w[o])) + int(model.arrays["b"][o])
            m, s = int(mult[o]), int(shift[o])
            if s and (acc * m) % (1 << s) == 1 << (s - 1):
                y = (acc * m + (1 << (s - 1))) >> s
                if 0 <= y - 1 and y <= 127:  # relu: both neighbours unclamped
                    hit.add(o)
    assert hit == {o for o in range(4) if shift[o] > 0}, path
    sidecar = {"kind": "mac", "mw": 12, "in_lanes": 12, "in_lane_width": 8, "in_lane_signed": True}
    assert np.array_equal(vectors(sidecar, model, 7, 0)[3 : 3 + len(ties)], np.array(ties))  # in the stream, after corners


def test_gemmlowp_multipliers_have_no_ties_to_hit():
    """A 31-bit multiplier's odd part is far larger than the output range: no tie can matter there."""
    model = random_layer("mac", 16, 4, 0)
    assert requantization_ties(model, -128, 127) == []


def test_a_unit_that_drops_high_bits_fails(tmp_path, monkeypatch):
    """Mutants of the old bug: 8-bit lanes for an s16.0 output, or 16-bit lanes whose high byte is lost."""
    model = dense(out_fmt="s16.0", mw=8, mh=4, seed=3, shift=np.full(4, 2))
    with monkeypatch.context() as mp:
        real = mac._lane_format
        mp.setattr(mac, "_lane_format", lambda text, what: real("s8.0" if what == "output" else text, what))
        out, sidecar = _unit(tmp_path, model, name="narrow")
    assert sidecar["out_lane_width"] == 8
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "20"]) == 2  # the packer refuses 1725 in 8 bits
    with monkeypatch.context() as mp:
        real_requantize = mac.MacUnit._requantize

        def low_byte(self, *args):  # 16-bit lanes whose high byte is lost
            results, valid = real_requantize(self, *args)
            return [y[:8] for y in results], valid

        mp.setattr(mac.MacUnit, "_requantize", low_byte)
        out, sidecar = _unit(tmp_path, model, name="low")
        assert sidecar["out_lane_width"] == 16
        assert main(["sim", str(out), "--simulator", "amaranth", "--vectors", "20"]) == 1
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "20"]) == 1


def test_a_unit_that_reads_unsigned_lanes_as_signed_fails(tmp_path, monkeypatch):
    model = dense(in_fmt="u8.0", mw=8, mh=4, seed=5)
    real = mac.MacUnit.elaborate

    def signed_reader(self, platform):
        self.in_lane_signed = True  # the hardware only: the sidecar was written before
        return real(self, platform)

    with monkeypatch.context() as mp:
        mp.setattr(mac.MacUnit, "elaborate", signed_reader)
        out, sidecar = _unit(tmp_path, model)
        assert sidecar["in_lane_signed"] is False
        assert main(["sim", str(out), "--simulator", "amaranth", "--vectors", "20"]) == 1
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "20"]) == 1
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "1000"]) == 1


def test_formats_wider_than_the_description_allows_are_refused():
    model = dense(mw=4, mh=2)
    with pytest.raises(ValueError, match="the output format s17.0 is wider than the 16 bits"):
        mac.MacUnit(model.arrays["w"], None, np.ones(2), np.ones(2), out_format="s17.0")


def test_a_refused_unit_does_not_warn_later(recwarn):
    """Amaranth warns about a component that was never elaborated, once anything has been (at garbage
    collection, far from the cause): a unit refused while being built must not, the error said it all."""
    import gc

    from hdl_gen.verilog import emit
    from hdl_gen.xnor import XnorPopcountUnit

    emit(XnorPopcountUnit(np.zeros((4, 8), int), None, 2, 8), "unit")  # from here on Amaranth checks
    with pytest.raises(ValueError, match="MH=4 is not a multiple of PE=3"):
        XnorPopcountUnit(np.zeros((4, 8), int), None, 3, 8)
    with pytest.raises(ValueError, match="outside the weight format"):
        mac.MacUnit(np.full((4, 8), 300), None, np.ones(4), np.ones(4))
    gc.collect()
    assert not [w for w in recwarn if type(w.message).__name__ == "UnusedElaboratable"]


def test_default_training_reaches_the_xnor_engine(tmp_path):
    """A binarized model trained with default options exports binary_dense layers that build as XNOR units."""
    run = tmp_path / "run"
    assert main(["train", "--model", "bnn_digits", "--epochs", "1", "--limit-train", "200", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "b.fxpm")]) == 0
    layers = [x for x in fxpm.load(tmp_path / "b.fxpm").layers if x["op"] == "binary_dense"]
    assert len(layers) == 2
    for layer in layers:
        out = tmp_path / layer["name"]
        assert main(["gen", "unit", "--from", str(tmp_path / "b.fxpm"), "--layer", layer["name"], "--pe", "2",
                     "--simd", "8", "--out", str(out)]) == 0
        assert json.loads((out / "fxp_xnor.json").read_text())["kind"] == "xnor"
        assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "30"]) == 0


def test_force_replaces_a_unit_folder_without_mixing_two_units(tmp_path):
    out = tmp_path / "u"
    assert main(["gen", "unit", "xnor", "--mw", "8", "--mh", "4", "--out", str(out)]) == 0
    assert main(["sim", str(out), "--simulator", "amaranth", "--vectors", "5"]) == 0
    assert main(["gen", "unit", "mac", "--mw", "8", "--mh", "4", "--out", str(out)]) == 2  # without --force
    assert main(["gen", "unit", "mac", "--mw", "8", "--mh", "4", "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fxp_mac.json", "fxp_mac.v", "fxp_mac_top.v", "layer.fxpm"]
    assert main(["sim", str(out), "--simulator", "amaranth", "--vectors", "5"]) == 0
