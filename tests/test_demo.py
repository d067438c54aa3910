"""fxp demo, the README's main command, end to end: train in dynamic fixed point, binarize, export, generate
for the iCEBreaker, verify in Verilator and over the serial pins, build the bitstream with the YoWASP tools,
and a report that renders in headless Chromium with every image loaded."""

import json
import re
import shutil
import subprocess

import pytest

from fxp.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    return out


def test_every_stage_agrees_with_the_golden_model(demo):
    r = json.loads((demo / "report.json").read_text())
    assert r["predict"]["integer_mismatches"] == 0 and r["predict"]["images"] == 449
    assert r["verify"]["mismatches"] == 0 and r["verify"]["images"] == 449
    assert r["serial"]["mismatches"] == 0 and r["serial"]["images"] == 449 and r["serial"]["baud"] == 115200
    golden = r["predict"]["golden_accuracy"]
    assert r["verify"]["hardware_accuracy"] == golden == r["serial"]["accuracy"]
    assert r["accuracy"]["golden model (integers)"] == golden
    assert r["verify"]["cycles_per_frame_predicted"] == 16
    assert abs(r["verify"]["cycles_per_frame_measured"] / 16 - 1) <= 0.05


def test_the_bitstream_fits_the_icebreaker_at_twice_its_clock(demo):
    hw = demo / "hw"
    pins = (hw / "board" / "top.pcf").read_text()
    assert "set_io uart_0__rx__io 6" in pins and "set_io uart_0__tx__io 9" in pins  # the platform's UART
    assert "the board's 12 MHz oscillator" in (hw / "board" / "README.md").read_text()
    report = json.loads((hw / "report.json").read_text())
    assert report == json.loads((demo / "report.json").read_text())["build"]
    assert (hw / "board" / "top.bin").stat().st_size == report["bitstream_bytes"] > 100_000
    cells = report["utilization"]["ICESTORM_LC"]
    assert 0 < cells["used"] <= cells["available"] == 5280
    assert report["fmax_mhz"] >= 2 * report["clock_mhz"] == 24  # the bar: twice the 12 MHz clock
    assert report["frames_per_second_at_clock"] == 12e6 / 16
    assert report["frames_per_second_serial"] == pytest.approx(115200 / 10 / 66)
    assert "Fmax" in (hw / "report.md").read_text()


def test_the_report(demo):
    md, page = (demo / "report.md").read_text(), (demo / "report.html").read_text()
    for text in (md, page):
        assert "board over serial (simulated)" in text and "ICESTORM_LC" in text and "fxp train --model bnn_digits" in text
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == ["accuracy.png", "confusion.png", "curves.png", "utilization.png"]
    for name in images:
        assert (demo / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (.ci/run installs it)")
def test_the_html_report_renders_in_headless_chromium(demo):
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    page = (demo / "report.html").as_uri()
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="4/4"' in dom  # set by the page once loaded: every image decoded
    shot = demo / "screenshot.png"
    subprocess.run([*browser, "--window-size=1200,4000", f"--screenshot={shot}", page], capture_output=True,
                   timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_refusals_leave_the_demo_as_it_was(demo, capsys):
    before = (demo / "report.json").read_bytes()
    assert main(["demo", "--out", str(demo), "--quiet"]) == 2  # an earlier demo: --force replaces it
    assert main(["demo", "--out", str(demo), "--board", "nosuch", "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "unknown board 'nosuch'" in err
    assert (demo / "report.json").read_bytes() == before


def test_the_same_seed_gives_the_same_model_verilog_and_report(demo, tmp_path):
    again = tmp_path / "again"
    assert main(["demo", "--out", str(again), "--epochs", "2", "--no-build", "--quiet"]) == 0
    for name in ("model.fxpm/model.json", "model.fxpm/arrays.npz", "hw/fxp_network.v", "hw/fxp_board.v"):
        assert (again / name).read_bytes() == (demo / name).read_bytes(), name
    first, second = ((d / "report.md").read_text().split("## Bitstream")[0] for d in (demo, again))
    assert first == second
    assert (again / "accuracy.png").read_bytes() == (demo / "accuracy.png").read_bytes()
