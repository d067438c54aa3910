import json
import subprocess
import sys

import pytest

from fxp.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fxp.cli", *args], capture_output=True, text=True)


def test_version_and_help():
    import fxp

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fxp {fxp.__version__}"
    r = run_cli("--help")
    assert r.returncode == 0 and "report" in r.stdout and "boards" in r.stdout


def test_report_writes_json_markdown_png_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["report", "--out", str(a), "--bits", "4,8", "--epochs", "60"]) == 0
    assert main(["report", "--out", str(b), "--bits", "4,8", "--epochs", "60"]) == 0
    rec = json.loads((a / "report.json").read_text())
    assert [r["word_bits"] for r in rec["sweep"]] == [4, 8]
    assert rec["float_accuracy"] > 0.9 and rec["sweep"][1]["accuracy"] > 0.9
    assert "| 8 |" in (a / "report.md").read_text()
    assert (a / "accuracy_vs_bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("report.json", "report.md", "accuracy_vs_bits.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize(
    "args,message",
    [(["report", "--bits", "0,8"], "word_bits must be in 1..64, got 0"),
     (["report", "--bits", "65"], "word_bits must be in 1..64, got 65")],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "r"
    r = run_cli(*args, "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip() == f"fxp: error: {message}"
    assert not out.exists()


def test_report_refuses_a_file_as_out_dir(tmp_path):
    f = tmp_path / "x"
    f.write_text("keep me")
    r = run_cli("report", "--out", str(f))
    assert r.returncode == 2 and "is a file; give a folder" in r.stderr and f.read_text() == "keep me"


def test_boards_json():
    r = run_cli("boards", "--json")
    boards = json.loads(r.stdout)
    assert boards["icebreaker"]["resources"]["dsp"] == 8 and boards["ulx3s-85f"]["family"] == "ecp5"


def test_usage_errors_are_one_line_exit_2(tmp_path):
    for args in (["train", "--mode", "int", "--out", str(tmp_path)], ["report", "--bits", "4,x"], ["nosuchcommand"]):
        r = run_cli(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("fxp")
