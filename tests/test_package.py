"""A plain (non-editable) wheel install finds templates/ and boards/ and runs the command."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_install_ships_templates_and_boards(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = wheels.glob("fxp-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )
    code = (
        "import fxp, fxp.resources as r;"
        "print(fxp.__file__); print(r.data_dir('templates')); print(r.data_dir('boards'));"
        "import hdl_gen.boards as b; print(sorted(b.boards()));"
        "print(r.render('quant_report.md.j2', model='m', dataset='d', seed=0, float_accuracy=1.0, n_test=1,"
        " rounding='floor', overflow='wrap', sweep=[], tensors=[], plot='p.png').splitlines()[0])"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    lines = r.stdout.splitlines()
    assert lines[0].startswith(str(site))  # the installed copy, not the checkout
    assert lines[1] == str(site / "fxp" / "_data" / "templates")
    assert lines[2] == str(site / "fxp" / "_data" / "boards")
    assert lines[3] == "['arty-a7-35t', 'icebreaker', 'ulx3s-85f']"
    assert lines[4] == "# fxp quantization report: m on d"
    r = subprocess.run([sys.executable, "-m", "fxp.cli", "boards"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "iCE40 UP5K" in r.stdout
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "fxp/_data/templates/quant_report.md.j2" in names and any(n.startswith("hdl_gen/") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
