"""fxp build's refusals (the iCEBreaker bitstream end to end is tests/test_demo.py's)."""


import pytest

from fxp.cli import main


@pytest.fixture(scope="module")
def bnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("bnn")
    assert main(["train", "--model", "bnn_digits", "--epochs", "1", "--limit-train", "300", "--quiet",
                 "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "m.fxpm")]) == 0
    return root / "m.fxpm"


def test_build_refuses_a_folder_without_a_board_design(bnn, tmp_path, capsys):
    """The bitstream itself is built and checked by fxp demo's test (tests/test_demo.py)."""
    assert main(["build", str(tmp_path / "nowhere")]) == 2
    assert main(["gen", "model", str(bnn), "--cycles", "16", "--out", str(tmp_path / "plain")]) == 0
    assert main(["build", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "holds no board design; make one with fxp gen model MODEL --board NAME" in err
    assert not (tmp_path / "plain" / "report.json").exists()
