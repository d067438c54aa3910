"""A board folder's top behind a pseudo-terminal: ``fxp run --sim DIR``.

``fxp gen model MODEL --board NAME`` writes the board top alone (``fxp_board.v``: the accelerator behind
its serial port, ports ``clk``, ``rst``, ``rx``, ``tx``). Verilator compiles it with
``templates/board_pty.cpp.j2``, which opens a pseudo-terminal and drives the rx pin with the bytes a
host writes to it, as 8N1 frames at the board's divider, and writes back what the tx pin sends. The host
side (:mod:`sim.serial_host`, pyserial) then talks to that terminal exactly as it talks to the board's
serial port: the host tool, both UARTs, the protocol and the accelerator run together, bit by bit, at
the board's clock and baud rate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import fxp
from fxp.errors import FxpError
from fxp.resources import render

BUILD_DIR = "run_build"


def _idle_cycles(spec: dict, sidecar: dict) -> int:
    # long enough for the accelerator to finish every frame in flight after the last request byte and
    # begin its reply: the frames' cycles many times over, and at least a hundred bit times
    return max(100 * spec["divider"], 16 * sidecar["cycles_per_frame"], 100_000)


def build(folder: Path, sidecar: dict) -> tuple[Path, float, bool]:
    """Compile the pseudo-terminal harness for the board top in ``folder``; (executable, seconds, rebuilt)."""
    from sim.replay import build_executable

    spec = sidecar.get("board")
    if not spec or "verilog" not in spec:
        raise FxpError(f"{folder} holds no board top; make one with fxp gen model MODEL --board NAME --out {folder}")
    names = [spec["verilog"], *sidecar["sim_models"]]
    for name in names:
        if not (folder / name).is_file():
            raise FxpError(f"{folder / name} is missing; regenerate the folder with fxp gen model --board {spec['name']}")
    cpp = render("board_pty.cpp.j2", version=fxp.__version__, top=spec["top"], divider=spec["divider"],
                 idle_cycles=_idle_cycles(spec, sidecar))
    return build_executable({n: (folder / n).read_bytes() for n in names}, cpp, spec["top"], folder / BUILD_DIR,
                            "board top's pseudo-terminal harness")


class BoardSim:
    """The board top of ``folder`` running behind a pseudo-terminal, as a context manager.

    ``port`` is the terminal's name (``/dev/pts/N``), to open as a serial port; ``stats`` (after the
    ``with`` block) the harness's counts: ``cycles``, ``bytes_in``, ``bytes_out``, ``framing_errors``.
    """

    def __init__(self, folder: str | Path, sidecar: dict) -> None:
        self.folder, self.sidecar = Path(folder), sidecar
        self.port: str | None = None
        self.stats: dict = {}
        self.build_seconds = 0.0

    def __enter__(self) -> BoardSim:
        exe, self.build_seconds, _ = build(self.folder, self.sidecar)
        self._proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.port = self._proc.stdout.readline().strip()
        if not self.port.startswith("/dev/"):
            self._proc.kill()
            err = self._proc.communicate()[1].strip()
            raise FxpError(f"the board top's pseudo-terminal did not open ({err or 'no message'}); "
                           "fxp run --sim needs /dev/ptmx (a Linux or macOS host)")
        return self

    def __exit__(self, *exc) -> None:
        try:
            _, err = self._proc.communicate(input="", timeout=30)  # closing stdin stops the harness
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, err = self._proc.communicate()
        last = err.strip().splitlines()[-1] if err.strip() else ""
        self.stats = json.loads(last) if last.startswith("{") else {"error": last}
