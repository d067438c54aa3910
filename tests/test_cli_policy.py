"""One policy for every subcommand, table-driven: each bad value of each option (negative, zero, NaN,
huge, wrong type, a missing file, a file where a folder is expected and the reverse, an existing
output) ends with exit status 2 and one line on stderr, no traceback, and nothing written."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fxp.cli import build_parser, main

HUGE = str(10**12)
# Placeholders, replaced by paths in the scratch folder: FILE (a text file), EMPTY (an empty folder),
# OTHER (a folder holding an unrelated file), NEW (a path that does not exist), RUN and RUN2 (runs of
# fxp train of two different models), FLOAT (a float run), URUN (FLOAT compressed with --uniform 4), MODEL (an
# export of RUN), UNIT (a unit folder), REPORTED (a
# folder holding a report), SWEPT (a folder holding a sweep), MLP (a model TOML file).
TRAINING = [  # options shared by train and sweep
    (["--model", "nosuch"], "neither a built-in"), (["--model", "FILE"], "not valid TOML"),
    (["--dataset", "nosuch"], "is not digits"), (["--dataset", "FILE"], "is a file"),
    (["--dataset", "EMPTY"], "train-images-idx3-ubyte[.gz] is missing"),
    (["--mode", "int"], "invalid choice"), (["--act-bits", "0"], "0 is outside 2..64"),
    (["--act-bits", "1"], "outside 2..64"), (["--act-bits", "65"], "outside"), (["--act-bits", "x"], "not a whole number"),
    (["--act-bits", "-3"], "outside"), (["--grad-bits", "0"], "outside"), (["--update-bits", HUGE], "outside"),
    (["--weight-bits", "nan"], "not a whole number"), (["--acc-bits", "1"], "outside"),
    (["--acc-overflow", "clip"], "invalid choice"), (["--rounding", "up"], "invalid choice"),
    (["--update-rounding", "x"], "invalid choice"), (["--max-overflow-rate", "-1"], "outside"),
    (["--max-overflow-rate", "nan"], "outside"), (["--max-overflow-rate", "2"], "outside"),
    (["--max-overflow-rate", "inf"], "outside"), (["--update-interval", "0"], "outside"),
    (["--epochs", "0"], "outside"), (["--epochs", "-1"], "outside"), (["--epochs", HUGE], "outside"),
    (["--epochs", "x"], "not a whole number"), (["--epochs", "nan"], "not a whole number"),
    (["--batch-size", "0"], "outside"), (["--batch-size", HUGE], "outside"), (["--lr", "0"], "outside"),
    (["--lr", "-1"], "outside"), (["--lr", "nan"], "outside"), (["--lr", "inf"], "outside"),
    (["--lr", "x"], "not a number"), (["--momentum", "-0.5"], "outside"), (["--momentum", "1"], "outside"),
    (["--momentum", "nan"], "outside"), (["--optimizer", "rmsprop"], "invalid choice"),
    (["--weight-decay", "-1"], "outside"), (["--weight-decay", "nan"], "outside"),
    (["--limit-train", "0"], "outside"), (["--limit-train", "-5"], "outside"), (["--seed", "-1"], "outside"),
    (["--seed", HUGE], "outside"), (["--seed", "x"], "not a whole number"),
    (["--optimizer", "adam"], "fixed mode stores parameters in fixed point"),
    (["--binary-reg", "1e-3"], "binary regularizer acts on a binarized model"), (["--binary-reg", "-1"], "outside"),
]
CASES = {
    "train": (["train", "--epochs", "1", "--limit-train", "50", "--quiet"], "--out", "NEW", TRAINING + [
        (["--out", "FILE"], "is a file"), (["--out", "RUN"], "already holds a training run"),
    ]),
    "sweep": (["sweep", "--epochs", "1", "--limit-train", "50", "--quiet", "--bits", "4,8"], "--out", "NEW", TRAINING + [
        (["--bits", "0"], "must be a whole number of bits in 2..64, got 0"), (["--bits", "65"], "2..64"), (["--bits", "x"], "comma-separated"),
        (["--bits", ""], "comma-separated"), (["--vary", "width"], "is not a dimension"), (["--vary", ""], "is not a dimension"),
        (["--tolerance", "-1"], "outside"), (["--tolerance", "nan"], "outside"), (["--out", "FILE"], "is a file"),
        (["--out", "SWEPT"], "already holds a sweep"),
    ]),
    "report": (["report", "--epochs", "2", "--bits", "4,8"], "--out", "NEW", [
        (["--bits", "0"], "word_bits must be in 1..64"), (["--bits", "65"], "1..64"), (["--bits", "4,x"], "comma-separated"),
        (["--epochs", "0"], "outside"), (["--epochs", HUGE], "outside"), (["--seed", "-1"], "outside"),
        (["--rounding", "x"], "invalid choice"), (["--overflow", "x"], "invalid choice"), (["--out", "FILE"], "is a file"),
        (["--out", "REPORTED"], "already holds a report"), (["NEW"], "does not exist"), (["FILE"], "is a file"),
        (["EMPTY"], "is not a training run"), (["RUN", "--bits", "1"], "bits must be word widths in 2..32"),
    ]),
    "export": (["export", "RUN"], "--out", "NEW", [
        (["--out", "FILE"], "is a file"), (["--out", "MODEL"], "already holds an integer model description"),
        (["--scales", "int8"], "invalid choice"), (["--weights", "x"], "invalid choice"),
        (["--weights", "affine"], "affine weights need per-channel scales"), (["--dataset", "nosuch"], "is not digits"),
        (["--dataset", "FILE"], "is a file"), (["--calibrate", "0"], "outside"), (["--calibrate", "-1"], "outside"),
        (["--calibrate", HUGE], "outside"), (["--seed", "-1"], "outside"),
        (["--scales", "per-channel", "--dataset", "EMPTY"], "train-images-idx3-ubyte[.gz] is missing"),
    ]),
    "export-run": (["export"], "--out", "NEW", [
        (["NEW"], "does not exist"), (["FILE"], "cannot load checkpoint"), (["EMPTY"], "holds no checkpoint.pt"),
    ]),
    "predict": (["predict", "MODEL", "--limit", "20"], None, None, [
        (["--dataset", "nosuch"], "is not digits"), (["--dataset", "FILE"], "is a file"), (["--run", "NEW"], "does not exist"),
        (["--run", "RUN2"], "give the run it was exported from"), (["--limit", "0"], "outside"),
        (["--limit", "-1"], "outside"), (["--seed", "-1"], "outside"), (["--json", "EMPTY"], "is a folder"),
        (["--json", "FILE"], "exists; choose another file or pass --force"), (["--json", "FILE/x.json"], "is a file"),
        (["--dataset", "EMPTY"], "train-images-idx3-ubyte[.gz] is missing"),
    ]),
    "predict-model": (["predict"], None, None, [
        (["NEW"], "does not exist"), (["FILE"], "is a file"), (["EMPTY"], "not an integer model description"),
    ]),
    "gen": (["gen", "unit"], "--out", "NEW", [
        (["xnor", "--mw", "-64", "--mh", "4"], "-64 is outside 1..65536"), (["xnor", "--mw", "0", "--mh", "4"], "outside"),
        (["xnor", "--mw", HUGE, "--mh", "4"], "outside"), (["xnor", "--mw", "x", "--mh", "4"], "not a whole number"),
        (["mac", "--mw", "8", "--mh", "0"], "outside"), (["xnor", "--mw", "8"], "give --mh"),
        (["xnor"], "give --mw"), ([], "give the unit kind"), (["nand", "--mw", "8", "--mh", "4"], "invalid choice"),
        (["xnor", "--mw", "8", "--mh", "4", "--pe", "0"], "outside"), (["xnor", "--mw", "8", "--mh", "4", "--pe", "-1"], "outside"),
        (["xnor", "--mw", "8", "--mh", "4", "--pe", "3"], "MH=4 is not a multiple of PE=3"),
        (["mac", "--mw", "8", "--mh", "4", "--simd", "5"], "MW=8 is not a multiple of SIMD=5"),
        (["xnor", "--mw", "8", "--mh", "4", "--seed", "-1"], "outside"),
        (["xnor", "--mw", "8", "--mh", "4", "--weights-in", "rom"], "invalid choice"),
        (["xnor", "--mw", "8", "--mh", "4", "--weights-in", "bram", "--table-bits", "0"], "outside 1..16"),
        (["xnor", "--mw", "8", "--mh", "4", "--weights-in", "bram", "--table-bits", "17"], "outside 1..16"),
        (["xnor", "--mw", "8", "--mh", "4", "--table-bits", "9"], "count tables (table_bits) live in block RAM"),
        (["mac", "--mw", "8", "--mh", "4", "--weights-in", "bram", "--table-bits", "9"], "table_bits is an option of the xnor unit, not of the mac unit"),
        (["mac", "--mw", "8", "--mh", "4", "--popcount", "chain"], "popcount is an option of the xnor unit, not of the mac unit"),
        (["xnor", "--mw", "8", "--mh", "4", "--popcount", "x"], "invalid choice"),
        (["xnor", "--mw", "8", "--mh", "4", "--top", "../../x"], "is not a Verilog identifier"),
        (["xnor", "--mw", "8", "--mh", "4", "--top", "1abc"], "is not a Verilog identifier"),
        (["xnor", "--mw", "8", "--mh", "4", "--top", "a b"], "is not a Verilog identifier"),
        (["xnor", "--mw", "8", "--mh", "4", "--top", "x" * 70], "is not a Verilog identifier"),
        (["--from", "NEW", "--layer", "fc1"], "does not exist"), (["--from", "FILE", "--layer", "fc1"], "is a file"),
        (["--from", "EMPTY", "--layer", "fc1"], "not an integer model description"),
        (["--from", "MODEL"], "--from needs --layer: one of fc1 (dense: mac)"),
        (["--from", "MODEL", "--layer", "fc9"], "no layer 'fc9' in the model"),
        (["xnor", "--from", "MODEL", "--layer", "fc1"], "which the mac unit builds, not the xnor unit"),
        (["mac", "--from", "MODEL", "--layer", "fc1", "--mw", "8"], "--mw and --mh size a random layer"),
        (["mac", "--mw", "8", "--mh", "4", "--layer", "fc1"], "--layer picks a layer of --from"),
    ]),
    "gen-out": (["gen", "unit", "xnor", "--mw", "8", "--mh", "4"], None, None, [
        (["--out", "FILE"], "is a file or a link"), (["--out", "UNIT"], "already holds unit fxp_xnor"),
        (["--out", "OTHER"], "holds files that are not a unit or network folder"),
    ]),
    "sim": (["sim", "UNIT", "--vectors", "5"], None, None, [
        (["--simulator", "modelsim"], "invalid choice"), (["--vectors", "0"], "outside"), (["--vectors", "-1"], "outside"),
        (["--vectors", "x"], "not a whole number"), (["--vectors", str(10**15)], "outside"), (["--seed", "-1"], "outside"),
        (["--harness", "x"], "invalid choice"), (["--harness", "cpp", "--simulator", "icarus"], "Verilator only"),
        (["--harness", "cpp", "--simulator", "verilator", "--waves"], "waves=True needs the cocotb harness"),
        (["--gap", "-0.1"], "outside"), (["--gap", "1"], "outside"), (["--gap", "nan"], "outside"),
        (["--stall", "1.5"], "outside"), (["--stall", "x"], "not a number"),
    ]),
    "sim-dir": (["sim"], None, None, [
        (["NEW"], "does not exist"), (["FILE"], "is a file"), (["EMPTY"], "is not a unit or network folder"),
        (["OTHER"], "is not a unit or network folder"),
    ]),
    "compress": (["compress", "RUN", "--prune", "0.5", "--retrain-epochs", "0", "--quiet"], "--out", "NEW", [
        (["--prune", "0"], "outside (0, 1)"), (["--prune", "1"], "outside (0, 1)"), (["--prune", "1.5"], "outside"),
        (["--prune", "nan"], "outside"), (["--prune", "x"], "is not a number"), (["--prune", "fc1=2"], "fc1: a sparsity 2"),
        (["--prune", "fc1"], "is not a number"), (["--prune", "=0.5"], "is not layer=value"),
        (["--prune", "fc9=0.5"], "layer 'fc9' does not exist"), (["--quality", "1"], "not both"),
        (["--quality", "-1"], "outside"), (["--scope", "net"], "invalid choice"),
        (["--prune", "fc1=0.5", "--scope", "global"], "give --prune with one number"), (["--stages", "0"], "outside"),
        (["--retrain-epochs", "-1"], "outside"), (["--dynamic"], "give retrain epochs"), (["--lr", "0"], "outside"),
        (["--neurons", "-1"], "outside"), (["--l1", "-1"], "outside"), (["--group-in", "nan"], "outside"),
        (["--group-out", "11"], "outside"), (["--tsrelu", "0.1"], "add --architecture"),
        (["--architecture"], "has no tsReLU gates to read"), (["--gate-epochs", "0"], "outside"),
        (["--gate-l1", "-1"], "outside"), (["--depth-l1", "nan"], "outside"), (["--share-bits", "0"], "outside 1..8"),
        (["--share-bits", "9"], "outside 1..8"), (["--share-bits", "4.5"], "is not a whole number"),
        (["--share-bits", "fc9=5"], "layer 'fc9' does not exist"), (["--huffman"], "give --share-bits too"),
        (["--share-init", "kmeans"], "invalid choice"), (["--share-epochs", "-1"], "outside"), (["--weight-decay", "-1"], "outside"),
        (["--share-rounds", "0"], "outside 1..100"), (["--share-rounds", "101"], "outside 1..100"),
        (["--share-rounds", "2.5"], "not a whole number"), (["--share-rounds", "2"], "give --share-bits too"),
        (["--share-bits", "3", "--share-free-epochs", "0"], "outside"),
        (["--share-bits", "3", "--share-free-epochs", "x"], "not a whole number"),
        (["--share-bits", "3", "--share-free-epochs", "2"], "give --share-rounds 2 or more"),
        (["--share-bits", "3", "--share-restart", "init"], "give --share-rounds 2 or more"),
        (["--share-bits", "3", "--share-rounds", "2", "--share-restart", "last"], "invalid choice"),
        (["--seed", "-1"], "outside"), (["--seed", "x"], "not a whole number"),
        (["--out", "FILE"], "is a file"), (["--out", "RUN"], "is the run being compressed"),
        (["--out", "RUN2"], "already holds a run"), (["--uniform", "0"], "outside 1..8"), (["--uniform", "9"], "outside 1..8"),
        (["--uniform", "x"], "not a whole number"), (["--uniform", "4.5"], "not a whole number"),
        (["--uniform", "4", "--uniform-scheme", "narrow"], "invalid choice"), (["--range-reg", "-1"], "outside"),
        (["--range-reg", "nan"], "outside"), (["--range-reg", "11"], "outside"),
        (["--uniform", "4"], "fine-tunes a float run"), (["--uniform", "4", "--stages", "2"], "prune in one round"),
        (["--uniform", "4", "--dynamic", "--retrain-epochs", "1"], "prune in one round"), (["--uniform", "4", "--share-bits", "3"], "not both"),
        (["--uniform", "1", "--uniform-scheme", "symmetric"], "a symmetric 1-bit grid holds only 0"),
    ]),
    "compress-float": (["compress", "FLOAT", "--retrain-epochs", "0", "--quiet"], "--out", "NEW", [
        (["--uniform-scheme", "symmetric"], "nothing to do"), (["--uniform", "0"], "outside 1..8"),
        (["--prune", "0.7", "--share-bits", "fc2=8"], "more clusters than weights: --share-bits 8 gives layer fc2 255 "
         "centroids for its 192 kept weights; give fc2 at most 7 bits"),
        (["--uniform", "2", "--uniform-scheme", "symmetric", "--out", "URUN"], "already holds a run"),
    ]),
    "export-uniform": (["export", "URUN"], "--out", "NEW", [
        (["--weights", "symmetric"], "holds 4-bit affine uniform weights"),
        (["--scales", "pow2"], "holds 4-bit uniform weights (fxp compress --uniform), whose grid has its own scales"),
    ]),
    "compress-run": (["compress"], "--out", "NEW", [
        (["NEW", "--prune", "0.5"], "does not exist"), (["FILE", "--prune", "0.5"], "is a file, not a run folder"),
        (["EMPTY", "--prune", "0.5"], "is not a training run"), (["RUN"], "nothing to do"),
    ]),
    "boards": (["boards"], None, None, [(["--json", "x"], "unrecognized arguments"), (["--format"], "unrecognized")]),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    (root / "FILE").write_text("not what anything expects\n")
    (root / "EMPTY").mkdir()
    (root / "OTHER").mkdir()
    (root / "OTHER" / "notes.txt").write_text("mine\n")
    (root / "MLP.toml").write_text('name = "tiny"\ninput_shape = [1, 8, 8]\n[[layers]]\ntype = "flatten"\n'
                                   '[[layers]]\ntype = "linear"\nout = 10\n')
    quick = ["--epochs", "1", "--limit-train", "100", "--quiet"]
    assert main(["train", *quick, "--out", str(root / "RUN")]) == 0
    assert main(["train", *quick, "--model", str(root / "MLP.toml"), "--out", str(root / "RUN2")]) == 0
    assert main(["train", *quick, "--mode", "float", "--out", str(root / "FLOAT")]) == 0
    assert main(["compress", str(root / "FLOAT"), "--uniform", "4", "--retrain-epochs", "0", "--quiet",
                 "--out", str(root / "URUN")]) == 0
    assert main(["export", str(root / "RUN"), "--out", str(root / "MODEL")]) == 0
    assert main(["gen", "unit", "xnor", "--mw", "8", "--mh", "4", "--out", str(root / "UNIT")]) == 0
    for name, marker in (("REPORTED", "report.json"), ("SWEPT", "sweep.json")):
        (root / name).mkdir()
        (root / name / marker).write_text("{}\n")
    return root


def _snapshot(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _cases():
    for command, (base, out_flag, out_value, rows) in CASES.items():
        for extra, message in rows:
            yield pytest.param(command, base, out_flag, out_value, extra, message, id=f"{command}:{' '.join(extra)[:40]}")


@pytest.mark.parametrize("command,base,out_flag,out_value,extra,message", list(_cases()))
def test_bad_value_exits_2_with_one_line_and_writes_nothing(scratch, monkeypatch, capsys, command, base, out_flag,
                                                            out_value, extra, message):
    monkeypatch.chdir(scratch)  # anything written to a default path would land here, and be seen

    def path(a: str) -> str:
        head, _, rest = a.partition("/")
        return str(scratch / head) + ("/" + rest if rest else "") if head in PLACEHOLDERS else a

    argv = [path(a) for a in base + extra]
    if out_flag and out_flag not in extra:
        argv += [out_flag, path(out_value)]
    before = _snapshot(scratch)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, (argv, err)
    assert err.startswith("fxp: error:") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert _snapshot(scratch) == before, "something was written"


PLACEHOLDERS = {"FILE", "EMPTY", "OTHER", "NEW", "RUN", "RUN2", "FLOAT", "URUN", "MODEL", "UNIT", "REPORTED", "SWEPT"}


@pytest.mark.parametrize("argv", [["gen", "unit", "xnor", "--mw", "-64", "--mh", "4", "--out", "u"],
                                  ["train", "--out", "FILE"], ["predict", "MODEL", "--json", "EMPTY"]])
def test_in_a_real_process_too(scratch, argv):
    argv = [str(scratch / a) if a in PLACEHOLDERS else a for a in argv]
    r = subprocess.run([sys.executable, "-m", "fxp.cli", *argv], capture_output=True, text=True, cwd=scratch,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def _actions(parser: argparse.ArgumentParser, prefix: str = "fxp"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _actions(child, f"{prefix} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prefix, action


def test_every_option_has_help_and_shows_its_default():
    for prefix, action in _actions(build_parser()):
        assert action.help and len(action.help) > 10, f"{prefix} {action.dest} has no help"
    text = subprocess.run([sys.executable, "-m", "fxp.cli", "train", "--help"], capture_output=True, text=True).stdout
    assert "(default: 20)" in text and "(default: fixed)" in text and "(default: 0.0001)" in text
