"""Files from elsewhere (checkpoints, caches, unit folders, model files) never run code or exhaust memory."""

import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from descriptions import random_cnn

from fxp import FxpError, fxpm
from fxp.cli import main
from fxp.resources import write_atomic
from fxp.train import load_checkpoint


class _RunsCode:
    """Unpickling this runs a shell command: what a hostile checkpoint can hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# --- 1. checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [[], ["--model", "bnn_digits"]], ids=["digits_mlp", "bnn_digits"])
def test_trained_checkpoints_load(tmp_path, model):
    assert main(["train", *model, "--epochs", "1", "--limit-train", "200", "--quiet", "--out", str(tmp_path)]) == 0
    net = load_checkpoint(tmp_path / "checkpoint.pt")
    assert net(torch.zeros(2, *net.spec["input_shape"])).shape == (2, 10)


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker, path = tmp_path / "MARKER", tmp_path / "checkpoint.pt"
    torch.save({"spec": _RunsCode(f"touch {shlex.quote(str(marker))}"), "config": {}, "recipe": {},
                "state_dict": {}}, path)
    with pytest.raises(FxpError, match="fxp train") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


# --- 2. the native kernel's cache ----------------------------------------------------------------
@pytest.fixture
def native(tmp_path, monkeypatch):
    from sim import native

    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native._library.cache_clear()
    yield native
    native._library.cache_clear()


def test_native_cache_is_private(native):
    native._library()
    assert stat.S_IMODE(native.cache_dir().stat().st_mode) == 0o700


def test_native_cache_open_to_everyone_is_refused(native):
    native.cache_dir().mkdir(mode=0o777)
    native.cache_dir().chmod(0o777)
    with pytest.raises(FxpError, match="rm -r") as e:
        native._library()
    assert str(native.cache_dir()) in str(e.value)


def test_planted_library_in_a_group_writable_cache_is_not_loaded(native, tmp_path):
    cc = os.environ.get("CC") or "cc"
    marker, src = tmp_path / "MARKER", tmp_path / "planted.c"
    src.write_text("#include <stdio.h>\n"
                   f'__attribute__((constructor)) static void run(void) {{ fclose(fopen("{marker}", "w")); }}\n'
                   "void xnor_popcount(void) {}\n")
    lib = native.library_path(cc)
    lib.parent.mkdir(mode=0o770)
    lib.parent.chmod(0o770)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    with pytest.raises(FxpError, match=str(lib.parent)):
        native._library()
    assert not marker.exists()


# --- 3. the replay harness executable ------------------------------------------------------------
def test_sim_never_runs_an_executable_from_the_unit_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u, marker = tmp_path / "u", tmp_path / "MARKER"
    assert main(["gen", "unit", "xnor", "--mw", "16", "--mh", "4", "--pe", "2", "--simd", "4", "--out", str(u)]) == 0
    sim = ["sim", str(u), "--simulator", "verilator", "--harness", "cpp", "--vectors", "100"]
    assert main(sim) == 0  # builds the harness (a folder shared after a run holds its build files)
    # The harness's last argument is its result file: claim a clean run without simulating anything.
    fake = u / "replay_build" / "obj" / "replay"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\neval last=\\${{$#}}\n"
                    'echo \'{"mismatches": 0, "outputs_received": 200, "cycles": 1, "seconds": 0.001}\' > "$last"\n')
    fake.chmod(0o755)
    stamp = u / "replay_build" / "stamp"
    if not stamp.exists():
        stamp.write_text("0" * 64)
    assert main(sim) == 0
    assert not marker.exists()
    rec = json.loads((u / "sim_verilator_cpp.json").read_text())
    assert not rec["rebuilt"] and rec["cycles"] > 100  # the cached build ran, and it simulated
    cache = tmp_path / "cache" / "fxp" / "replay"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and len(list(cache.iterdir())) == 1


def test_replay_cache_writable_by_others_is_refused(tmp_path, monkeypatch):
    from sim.replay import CACHE_DIR, build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u = tmp_path / "u"
    assert main(["gen", "unit", "xnor", "--mw", "16", "--mh", "4", "--pe", "2", "--simd", "4", "--out", str(u)]) == 0
    cache = tmp_path / "cache" / "fxp" / CACHE_DIR
    cache.mkdir(parents=True)
    cache.chmod(0o775)
    sidecar = json.loads((u / "fxp_xnor.json").read_text())
    with pytest.raises(FxpError, match=str(cache)):
        build(u, sidecar)


# --- 4. arrays.npz -------------------------------------------------------------------------------
def _npy(descr, shape, payload):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _with_member(tmp_path, name, data):
    """A valid model whose arrays.npz also holds the member ``name`` with ``data``."""
    m = random_cnn(0)
    path = fxpm.save(tmp_path / "m.fxpm", m.spec, m.arrays)
    with zipfile.ZipFile(path / "arrays.npz", "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return path


def test_normal_model_loads(tmp_path):
    m = random_cnn(0)
    loaded = fxpm.load(fxpm.save(tmp_path / "m.fxpm", m.spec, m.arrays))
    assert loaded.arrays.keys() == m.arrays.keys()
    assert all(np.array_equal(loaded.arrays[k], m.arrays[k]) for k in m.arrays)


@pytest.mark.parametrize("descr,shape,payload,why", [
    ("|i1", (1 << 50,), bytes(16), "claims shape"),  # a petabyte from 16 bytes
    ("|O", (2,), bytes(16), "dtype object"),
    ("<f8", (2,), bytes(16), "dtype float64"),
    ([("a", "<i4")], (2,), bytes(8), "not a plain integer"),
])
def test_crafted_npy_header_is_refused(tmp_path, descr, shape, payload, why):
    path = _with_member(tmp_path, "x.npy", _npy(descr, shape, payload))
    with pytest.raises(FxpError, match=f"arrays.npz: member 'x.npy'.*{why}.*re-export the model"):
        fxpm.load(path)


def test_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = _with_member(tmp_path, "big.npy", _npy("<i8", (1000,), bytes(8000)))  # deflates to a few bytes
    fxpm.load(path)  # within the limits: loads (the extra array is unused)
    monkeypatch.setattr(fxpm, "MAX_ARRAY_BYTES", 4096)
    with pytest.raises(FxpError, match="member 'big.npy' inflates to 8128 bytes.*re-export the model"):
        fxpm.load(path)
    monkeypatch.setattr(fxpm, "MAX_ARRAY_BYTES", 1 << 30)
    monkeypatch.setattr(fxpm, "MAX_TOTAL_BYTES", 8192)
    with pytest.raises(FxpError, match="members inflate to .*re-export the model"):
        fxpm.load(path)


# --- 5. write_atomic -----------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    f = tmp_path / "f.txt"
    code = f"import os; os.umask({umask}); from fxp.resources import write_atomic; write_atomic({str(f)!r}, 'x')"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
    assert stat.S_IMODE(f.stat().st_mode) == mode


def test_write_atomic_replaces_a_link_and_leaves_its_target(tmp_path):
    target, folder = tmp_path / "outside.txt", tmp_path / "folder"
    target.write_text("keep me")
    folder.mkdir()
    (folder / "out.json").symlink_to(target)
    write_atomic(folder / "out.json", "new")
    assert not (folder / "out.json").is_symlink() and (folder / "out.json").read_text() == "new"
    assert target.read_text() == "keep me"


# --- 6. the cocotb runner's files ----------------------------------------------------------------
def test_cocotb_runner_does_not_write_through_links(tmp_path, monkeypatch):
    import cocotb_tools.runner

    from sim.cocotb_runner import run_stream_test

    class Runner:  # the files are written around the simulator: no need to run one
        def build(self, **kw):
            pass

        def test(self, **kw):
            return kw["results_xml"]

    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda sim: Runner())
    monkeypatch.setattr(cocotb_tools.runner, "get_results", lambda results: (1, 0))
    build = tmp_path / "build"
    build.mkdir()
    targets = {name: tmp_path / f"outside_{name}" for name in ("top.v", "tb_config.json")}
    for name, target in targets.items():
        target.write_text("keep me")
        (build / name).symlink_to(target)
    run_stream_test("module top; endmodule\n", "top", [1], [1], "icarus", build)
    assert all(t.read_text() == "keep me" for t in targets.values())
    assert json.loads((build / "tb_config.json").read_text())["inputs"] == ["1"]


@pytest.mark.parametrize("field,value,message", [
    ("top", "../../x", "top '../../x' is not a Verilog identifier"),
    ("wrapper", "x_top; system(\"id\")", "is not a Verilog identifier"),
    ("sim_models", ["../../../etc/passwd"], "are not plain .v file names"),
    ("sim_models", ["/tmp/evil.v"], "are not plain .v file names"),
    ("in_words", "1; int x = system(\"id\")", "in_words must be whole numbers"),
    ("out_lane_signed", "yes", "out_lane_signed must be whole numbers (signedness: true or false)"),
])
def test_a_sidecar_cannot_name_files_outside_its_folder_or_inject_code(tmp_path, capsys, field, value, message):
    """Sidecar names become file names, Verilog modules and C++ identifiers: fxp sim checks them first."""
    out = tmp_path / "u"
    assert main(["gen", "unit", "xnor", "--mw", "8", "--mh", "2", "--out", str(out)]) == 0
    sidecar = json.loads((out / "fxp_xnor.json").read_text())
    sidecar[field] = value
    (out / "fxp_xnor.json").write_text(json.dumps(sidecar))
    for sim in (["--simulator", "icarus"], ["--simulator", "verilator", "--harness", "cpp"]):
        assert main(["sim", str(out), *sim, "--vectors", "5"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(out.glob("sim_*.json"))


def test_the_same_unit_in_two_folders_gives_the_same_bytes(tmp_path):
    """No absolute path of this machine in the Verilog (source locations are relative) or the wrapper."""
    from hdl_gen.gen import random_layer

    m = random_layer("mac", 8, 4, 0)
    fxpm.save(tmp_path / "one" / "deep" / "m.fxpm", m.spec, m.arrays)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    for d in ("one", "two"):
        assert main(["gen", "unit", "--from", str(tmp_path / d / "deep" / "m.fxpm"), "--layer", "layer", "--pe", "2",
                     "--out", str(tmp_path / d / "u")]) == 0
    for name in ("fxp_mac.v", "fxp_mac_top.v", "fxp_mac.json"):
        a, b = ((tmp_path / d / "u" / name).read_text() for d in ("one", "two"))
        assert a == b, name
        assert str(tmp_path) not in a and str(Path(__file__).resolve().parent.parent) not in a, name
    assert 'src = "hdl_gen/mac.py:' in (tmp_path / "one" / "u" / "fxp_mac.v").read_text()  # kept, relative
