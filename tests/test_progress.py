"""Progress output: tqdm bars on a terminal, plain lines in a log."""

import io
import re
import subprocess
import sys

from tqdm import tqdm

from fxp.progress import LogProgress, track


def test_training_log_has_one_plain_line_per_epoch(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fxp.cli", "train", "--epochs", "2", "--limit-train", "200",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = r.stderr.splitlines()
    pattern = r"fixed epochs ([12])/2: loss \d+\.\d{3}, test \d+\.\d{2}%"
    epochs = [m.group(1) for m in map(re.compile(pattern).fullmatch, lines) if m]
    assert epochs == ["1", "2"], lines
    assert not any("batches" in line for line in lines)  # a short epoch's batches stay out of the log


def test_log_lines_carry_the_postfix_and_disable_silences(capsys):
    bar = track(range(3), "widths")
    for i in bar:
        bar.set_postfix(bits=i, accuracy=0.5)
    assert capsys.readouterr().err == "widths 1/3: bits 0, accuracy 0.5\nwidths 2/3: bits 1, accuracy 0.5\n" \
                                      "widths 3/3: bits 2, accuracy 0.5\n"
    bar = track(range(3), "quiet", disable=True)
    for _ in bar:
        bar.set_postfix(loss="1.0")
    assert capsys.readouterr() == ("", "")


def test_transient_bars_print_at_most_once_per_interval(capsys):
    assert list(LogProgress(range(5), "batches", every_item=False, interval_s=3600)) == list(range(5))
    assert capsys.readouterr().err == ""
    list(LogProgress(range(2), "batches", every_item=False, interval_s=0))
    assert capsys.readouterr().err == "batches 1/2\nbatches 2/2\n"


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = track(range(2), "epochs")
    assert isinstance(bar, tqdm)
    for _ in bar:
        bar.set_postfix(loss="0.1")
    assert "\r" in term.getvalue() and "loss=0.1" in term.getvalue()
