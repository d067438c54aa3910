"""fxp gen unit / fxp sim: unit folders, three simulators, determinism, and a caught mismatch."""

import json

import pytest

from fxp import fxpm
from fxp.cli import main


@pytest.mark.parametrize("kind,sims", [("xnor", ("amaranth", "icarus", "verilator")), ("mac", ("amaranth", "icarus"))])
def test_gen_then_sim_on_every_simulator(tmp_path, kind, sims):
    out = tmp_path / "u"
    assert main(["gen", "unit", kind, "--mw", "32", "--mh", "8", "--pe", "4", "--simd", "8", "--out", str(out)]) == 0
    sidecar = json.loads((out / f"fxp_{kind}.json").read_text())
    assert (sidecar["nf"], sidecar["sf"], sidecar["cycles_per_vector"]) == (2, 4, 8)
    top = (out / f"fxp_{kind}_top.v").read_text()
    for port in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data"):
        assert port in top
    for sim in sims:
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "60"]) == 0
        rec = json.loads((out / f"sim_{sim}.json").read_text())
        assert rec["mismatches"] == 0 and rec["output_words"] == 120


def test_same_seed_same_files(tmp_path):
    for d in ("a", "b"):
        assert main(["gen", "unit", "mac", "--mw", "8", "--mh", "4", "--pe", "2", "--simd", "2", "--seed", "5",
                     "--out", str(tmp_path / d)]) == 0
    for f in ("fxp_mac.v", "fxp_mac_top.v", "fxp_mac.json", "layer.fxpm/model.json", "layer.fxpm/arrays.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_force_replaces_a_unit_with_its_synthesis_folder(tmp_path):
    """A folder a bench synthesised (its ``synth`` folder beside the unit) is regenerated with --force; a
    folder holding anything else still stops it."""
    args = ["gen", "unit", "mac", "--mw", "8", "--mh", "4", "--out", str(tmp_path / "u")]
    assert main(args) == 0
    (tmp_path / "u" / "synth").mkdir()
    (tmp_path / "u" / "synth" / "fxp_mac.stat.json").write_text("{}")
    assert main([*args, "--force"]) == 0 and not (tmp_path / "u" / "synth").exists()
    (tmp_path / "u" / "notes").mkdir()
    assert main([*args, "--force"]) == 2


def test_sim_names_the_first_differing_vector(tmp_path, capsys):
    out = tmp_path / "u"
    assert main(["gen", "unit", "xnor", "--mw", "16", "--mh", "4", "--pe", "2", "--simd", "4", "--out", str(out)]) == 0
    m = fxpm.load(out / "layer.fxpm")
    arrays = dict(m.arrays)
    arrays["t"] = m.arrays["t"].copy()
    arrays["t"][3] = 0 if arrays["t"][3] else 17  # the golden side now disagrees with the generated Verilog
    fxpm.save(out / "layer.fxpm", m.spec, arrays)
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "40"]) == 1
    text = capsys.readouterr().out
    assert "mismatches" in text and "first differing vector:" in text
    rec = json.loads((out / "sim_icarus.json").read_text())
    assert rec["first_mismatch"]["outputs"] == [2, 3]


def test_bad_unit_requests_exit_2(tmp_path, capsys):
    assert main(["gen", "unit", "xnor", "--mw", "10", "--mh", "4", "--pe", "3", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert main(["sim", str(tmp_path), "--simulator", "icarus"]) == 2
    # count tables: xnor only, and their address must leave room for inputs beside the fold index
    assert main(["gen", "unit", "mac", "--mw", "8", "--mh", "4", "--weights-in", "bram", "--table-bits", "9",
                 "--out", str(tmp_path / "m")]) == 2
    assert "table_bits is an option of the xnor unit, not of the mac unit; drop it" in capsys.readouterr().err
    assert main(["gen", "unit", "xnor", "--mw", "64", "--mh", "8", "--weights-in", "bram", "--table-bits", "9",
                 "--out", str(tmp_path / "t")]) == 2
    assert "table_bits=9 leaves no address bit for inputs beside the 9" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "t").exists()


@pytest.mark.parametrize("simulator,wave", [("amaranth", "amaranth.vcd"), ("icarus", "sim_build_icarus/fxp_xnor_top.fst"),
                                           ("verilator", "sim_build_verilator/dump.vcd")])
def test_waveforms_on_request(tmp_path, simulator, wave):
    out = tmp_path / "u"
    assert main(["gen", "unit", "xnor", "--mw", "8", "--mh", "2", "--pe", "2", "--simd", "8", "--out", str(out)]) == 0
    assert main(["sim", str(out), "--simulator", simulator, "--vectors", "5", "--waves"]) == 0
    assert (out / wave).stat().st_size > 100
