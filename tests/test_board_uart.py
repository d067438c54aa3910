"""The board top under cocotb, spoken to over its serial pins by cocotbext-uart (sim.board_uart): every reply
equals the golden model's, byte for byte, on Verilator (100 test images) and Icarus; and the testbench
fails when the hardware and the expectations differ by one byte, or when the golden model is not the one
the hardware was made from."""

import json
import shutil

import pytest

from fxp import fxpm
from fxp.cli import main
from fxp.errors import FxpError
from sim import board_uart
from sim.board_uart import run_board_uart


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """The default digits MLP behind a 1 Mbaud serial port on the iCEBreaker's 12 MHz clock (12 cycles a
    bit keeps the simulations short): signed 10-bit scores, two bytes each in a reply."""
    root = tmp_path_factory.mktemp("uart")
    assert main(["train", "--epochs", "1", "--limit-train", "300", "--quiet", "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "m.fxpm")]) == 0
    out = root / "hw"
    assert main(["gen", "model", str(root / "m.fxpm"), "--board", "icebreaker", "--baud", "1000000",
                 "--out", str(out)]) == 0
    spec = json.loads((out / "fxp_network.json").read_text())
    assert spec["board"]["divider"] == 12 and spec["out_lane_signed"] and spec["out_lane_width"] > 8
    return out


def test_verilator_replies_equal_the_golden_models(board, capsys):
    assert main(["sim", str(board), "--uart", "--simulator", "verilator", "--vectors", "100"]) == 0  # fxp sim --uart
    assert "100 digits test images, 0 replies differ from the golden model's" in capsys.readouterr().out
    r = json.loads((board / "sim_board_uart_verilator.json").read_text())
    assert r["images"] == 100 and r["requests_with_scores"] == 50 and r["noise_bytes"] > 0 and r["idle_gaps"] > 0
    assert r["mismatches"] == 0 and r["missing_replies"] == 0 and r["extra_bytes"] == 0 and r["passed"]
    assert r["hardware_accuracy"] == r["golden_accuracy"]
    assert (board / "sim_build_board_verilator").is_dir()


def test_icarus_replies_equal_the_golden_models(board):
    r = run_board_uart(board, "icarus", images=10, seed=1, scores_every=3)
    assert r["requests_with_scores"] == 4 and r["mismatches"] == 0 and r["passed"]
    assert r["hardware_accuracy"] == r["golden_accuracy"]


def test_one_wrong_byte_is_a_mismatch(board, monkeypatch):
    """The expectations of image 1 (a request with scores) lose one bit of a score's sign byte: exactly that
    reply is named, and the record still counts its class as right."""
    real = board_uart.golden_replies

    def corrupted(*args):
        replies, classes = real(*args)
        bad = bytearray(replies[1])
        bad[5] ^= 0x40
        return [replies[0], bytes(bad), *replies[2:]], classes

    monkeypatch.setattr(board_uart, "golden_replies", corrupted)
    r = run_board_uart(board, "icarus", images=3, scores_every=1)
    assert r["mismatches"] == 1 and not r["passed"]
    first = r["first_mismatch"]
    assert first["image"] == 1 and first["scores"]
    assert bytes.fromhex(first["got"]) != bytes.fromhex(first["expected"])
    assert [a != b for a, b in zip(bytes.fromhex(first["got"]), bytes.fromhex(first["expected"]))].index(True) == 5
    assert r["hardware_accuracy"] == r["golden_accuracy"]
    assert "1 replies differ; first to request 1" in (board / "sim_build_board_icarus" / "test.log").read_text()


def test_a_different_golden_model_is_caught(board, tmp_path):
    """The folder's description says one thing and its Verilog another (a bias of the last layer moved by
    five output steps): every reply the moved score shows in differs."""
    from sim.network_run import images

    copy = tmp_path / "hw"
    shutil.copytree(board, copy, ignore=shutil.ignore_patterns("sim_build_*", "sim_*.json", "board"))
    model = fxpm.load(copy / "model.fxpm")
    arrays = dict(model.arrays)
    shift, multiplier = int(arrays["fc2.shift"][3]), int(arrays["fc2.multiplier"][3])
    arrays["fc2.bias"] = arrays["fc2.bias"].copy()
    arrays["fc2.bias"][3] += -(-5 * (1 << shift) // multiplier)  # five steps of the score, rounded up
    fxpm.save(copy / "model.fxpm", model.spec, arrays)
    sidecar = json.loads((copy / "fxp_network.json").read_text())
    raw = images(sidecar, model, None, 3)[0]
    flags = [True] * 3
    differ = sum(a != b for a, b in zip(board_uart.golden_replies(sidecar, model, raw, flags)[0],
                                        board_uart.golden_replies(sidecar, fxpm.load(copy / "model.fxpm"), raw,
                                                                  flags)[0]))
    assert differ > 0
    r = run_board_uart(copy, "icarus", images=3, scores_every=1)
    assert r["mismatches"] == differ and not r["passed"]


def test_refusals(board, tmp_path):
    with pytest.raises(FxpError, match="simulator 'xcelium' is not supported; use verilator or icarus"):
        run_board_uart(board, "xcelium")
    with pytest.raises(FxpError, match="images must be a whole number of at least 1, got 0"):
        run_board_uart(board, images=0)
    plain = tmp_path / "plain"  # the folder without its board top
    shutil.copytree(board, plain, ignore=shutil.ignore_patterns("sim_build_*", "sim_*.json", "board"))
    sidecar = json.loads((plain / "fxp_network.json").read_text())
    del sidecar["board"]
    (plain / "fxp_network.json").write_text(json.dumps(sidecar))
    with pytest.raises(FxpError, match="holds no board design; make one with fxp gen model MODEL --board NAME"):
        run_board_uart(plain, "icarus")
    assert not list(plain.glob("sim_*"))
