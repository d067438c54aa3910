"""fxp run: the host side over a serial port, tested on the board top simulated behind a pseudo-terminal
(sim/board_sim.py): the host tool, both UARTs, the protocol and the accelerator together, bit by bit."""

import json

import numpy as np
import pytest

from fxp import fxpm
from fxp.cli import main


@pytest.fixture(scope="module")
def board_folder(quick_bnn, tmp_path_factory):
    """A digits BNN generated for the iCEBreaker at its 12 MHz clock and the default 115200 Bd."""
    root = tmp_path_factory.mktemp("run")
    assert main(["gen", "model", str(quick_bnn), "--board", "icebreaker", "--out", str(root / "hw")]) == 0
    return root / "hw"


def test_whole_digits_test_set_over_the_pseudo_terminal(board_folder, capsys):
    assert main(["run", "--sim", str(board_folder), "--quiet"]) == 0
    rec = json.loads((board_folder / "run_sim.json").read_text())
    assert rec["images"] == 449 and rec["baud"] == 115200
    assert rec["mismatches"] == 0
    assert rec["accuracy"] == rec["golden_accuracy"]
    # every byte went over the pins: a request of 66 bytes and a reply of 2 per image
    assert rec["harness"] == {"cycles": rec["harness"]["cycles"], "bytes_in": 449 * 66, "bytes_out": 449 * 2,
                              "framing_errors": 0}
    assert "0 replies differ" in capsys.readouterr().out


def test_scores_and_a_changed_model_are_caught(board_folder, tmp_path):
    """With --scores every score is compared; a description whose weights no longer match the
    hardware's gives mismatches and exit status 1, so the comparison can fail."""
    assert main(["run", "--sim", str(board_folder), "--images", "40", "--scores", "--quiet"]) == 0
    model = fxpm.load(board_folder / "model.fxpm")
    original = {k: v.copy() for k, v in model.arrays.items()}
    changed = dict(original)
    changed["bfc2.weight"] = original["bfc2.weight"] ^ np.uint8(1)  # one packed weight bit flipped per class
    try:
        fxpm.save(board_folder / "model.fxpm", model.spec, changed)
        assert main(["run", "--sim", str(board_folder), "--images", "40", "--scores", "--quiet"]) == 1
        assert json.loads((board_folder / "run_sim.json").read_text())["mismatches"] > 0
    finally:
        fxpm.save(board_folder / "model.fxpm", model.spec, original)


def test_bad_input(board_folder, tmp_path, capsys):
    assert main(["run", "--port", str(tmp_path / "ttyUSB9"), "--dataset", "digits"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--port", "/dev/null", "--sim", str(board_folder)]) == 2
    assert main(["run", "--sim", str(tmp_path)]) == 2
    assert main(["run", "--port", "/dev/null", "--dataset", "digits", "--scores"]) == 2
    err = capsys.readouterr().err
    assert err.count("fxp: error:") == 3 and "--scores needs the board folder" in err
