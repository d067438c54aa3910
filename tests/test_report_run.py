"""``report_run``: the quantization report on a run of ``fxp train``."""

import json

import pytest

from fxp import FxpError
from fxp.cli import main
from fxp.report import report_run

FILES = ("report.json", "report.md", "accuracy_vs_bits.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny fixed-point digits_mlp run, as fxp train writes it."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--epochs", "2", "--limit-train", "300", "--quiet", "--out", str(run)]) == 0
    return run


def test_sweep_quantizes_the_runs_own_model(run, tmp_path):
    metrics = json.loads((run / "metrics.json").read_text())
    rec = report_run(run, tmp_path, bits=(16, 3, 8, 8), progress=False)
    assert rec["checkpoint_accuracy"] == metrics["test_accuracy"] and rec["checkpoint_matches_metrics"]
    assert [r["word_bits"] for r in rec["sweep"]] == [3, 8, 16]
    acc = {r["word_bits"]: r["accuracy"] for r in rec["sweep"]}
    assert all(0 <= a <= 1 for a in acc.values())
    # the run's parameters, not a fresh model's: at 16 bits post-training quantization changes little
    assert acc[16] > 0.2 and abs(acc[16] - metrics["test_accuracy"]) <= 0.01
    assert acc[3] <= acc[16]
    for r in rec["sweep"]:
        assert set(r["formats"]) == {"input.act", "fc1.weight", "fc1.out.act", "fc2.weight", "fc2.out.act"}
        assert all(f.startswith(f"s{r['word_bits']}.") for f in r["formats"].values())
    assert rec["float_accuracy"] is None  # a fixed run without --baseline has no float accuracy
    summary = rec["summary"]
    assert summary["mode"] == "fixed" and summary["epochs"] == 2
    recorded = {t["tensor"]: t for t in summary["tensors"]}
    assert recorded.keys() == metrics["formats"].keys()
    for name, f in metrics["formats"].items():
        assert recorded[name]["format"] == f["format"]
        assert recorded[name]["last_overflow_rate"] == f["history"][-1]["overflow_rate"]
    assert json.loads((tmp_path / "report.json").read_text()) == rec
    md = (tmp_path / "report.md").read_text()
    assert "fixed mode (activations 10 bits" in md and "| fc1.out.grad |" in md
    assert "| 16 |" in md and "| tensor | 3 bits | 8 bits | 16 bits |" in md
    assert (tmp_path / "accuracy_vs_bits.png").read_bytes()[:4] == b"\x89PNG"


def test_same_inputs_give_byte_identical_files(run, tmp_path):
    for out in ("a", "b"):
        report_run(run, tmp_path / out, bits=(4, 8), calibrate=500, progress=False)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_split_seed_is_flagged(run, tmp_path):
    rec = report_run(run, tmp_path, bits=(8,), seed=1, progress=False)
    assert rec["seed"] == 1 and not rec["checkpoint_matches_metrics"]
    assert "differs from metrics.json" in (tmp_path / "report.md").read_text()


def test_binarized_run_reports_its_summary_and_skips_the_sweep(tmp_path):
    run = tmp_path / "bnn"
    assert main(["train", "--model", "bnn_digits", "--mode", "qat", "--epochs", "1", "--limit-train", "200",
                 "--quiet", "--out", str(run)]) == 0
    rec = report_run(run, tmp_path / "report", progress=False)
    assert rec["binary"] and rec["sweep"] == [] and rec["plot"] is None
    assert rec["checkpoint_accuracy"] == json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert not (tmp_path / "report" / "accuracy_vs_bits.png").exists()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "no word widths to sweep" in md and "binarized: ±1 weights and activations" in md


@pytest.mark.parametrize(
    "kwargs,match",
    [({"run": "missing"}, "run folder .*missing does not exist"),
     ({"run": "empty"}, r"is not a training run \(checkpoint.pt is missing\)"),
     ({"bits": (1, 8)}, r"bits must be word widths in 2..32, got \(1, 8\)"),
     ({"bits": ()}, "bits must be word widths"),
     ({"bits": ("8",)}, "bits must be word widths"),
     ({"calibrate": 0}, "calibrate must be a whole number of training images >= 1"),
     ({"rounding": "up"}, "rounding='up' is not a rounding mode"),
     ({"seed": "0"}, "seed must be a whole number"),
     ({"out": "a_file"}, "is a file; give a folder")],
)
def test_bad_input_is_refused_before_anything_is_written(run, tmp_path, kwargs, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    args = {"run": run, "out": tmp_path / "out", **kwargs}
    for key in ("run", "out"):
        if isinstance(args[key], str):
            args[key] = tmp_path / args[key]
    with pytest.raises(FxpError, match=match) as e:
        report_run(args.pop("run"), args.pop("out"), progress=False, **args)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
