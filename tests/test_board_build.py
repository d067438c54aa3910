"""A board build end to end: a trained digits BNN behind the serial port of the iCEBreaker, its bitstream
from the YoWASP tools, and its report; and the refusals around it."""

import json

import pytest

from fxp.cli import main


@pytest.fixture(scope="module")
def bnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("bnn")
    assert main(["train", "--model", "bnn_digits", "--epochs", "1", "--limit-train", "300", "--quiet",
                 "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "m.fxpm")]) == 0
    return root / "m.fxpm"


def test_the_digits_bnn_becomes_an_icebreaker_bitstream(bnn, tmp_path, capsys):
    out = tmp_path / "icebreaker"
    assert main(["gen", "model", str(bnn), "--board", "icebreaker", "--cycles", "16", "--pipeline",
                 "--out", str(out)]) == 0
    sidecar = json.loads((out / "fxp_network.json").read_text())
    assert sidecar["board"]["name"] == "icebreaker" and sidecar["board"]["clock_hz"] == 12_000_000
    pins = (out / "board" / "top.pcf").read_text()
    assert "set_io uart_0__rx__io 6" in pins and "set_io uart_0__tx__io 9" in pins  # the platform's UART
    assert main(["build", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "board" / "top.bin").stat().st_size == report["bitstream_bytes"] > 100_000
    cells = report["utilization"]["ICESTORM_LC"]
    assert 0 < cells["used"] <= cells["available"] == 5280
    assert report["fmax_mhz"] >= 2 * report["clock_mhz"] == 24  # the bar: twice the 12 MHz clock
    assert report["frames_per_second_at_clock"] == 12e6 / 16
    assert report["frames_per_second_serial"] == pytest.approx(115200 / 10 / 66)
    assert "Fmax" in (out / "report.md").read_text()
    # the folder is still a network folder fxp sim takes
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "100000"]) == 0
    capsys.readouterr()
    assert main(["build", str(tmp_path / "nowhere")]) == 2
    assert main(["gen", "model", str(bnn), "--cycles", "16", "--out", str(tmp_path / "plain")]) == 0
    assert main(["build", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "holds no board design; make one with fxp gen model MODEL --board NAME" in err
    assert not (tmp_path / "plain" / "report.json").exists()
