"""A unit folder made by ``fxp gen unit``, as the simulators read it: its sidecar and its Verilog files.

The sidecar's names become file names, Verilog module names and C++ identifiers (the replay
harness), so a sidecar is checked before anything uses it: a folder someone sends you cannot point a
simulator at files outside it or put text of its choosing into generated code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fxp.errors import FxpError

# A Verilog identifier that is also a C++ one and a plain file name (no '$', no escapes).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The sidecar's numbers (widths, counts, cycles): whole numbers of 0 or more. Some every folder has
# (the packers and the replay harness read them), some a unit's, some a network's.
_COUNTS = ("in_width", "in_lanes", "in_lane_width", "in_words", "in_transfers", "out_width", "out_lane_width",
           "out_words", "out_transfers", "cycles_per_vector")
_KIND_COUNTS = {"network": ("classes", "index_bits", "levels", "pixels", "pixels_per_word", "cycles_per_frame")}
_UNIT_COUNTS = ("mw", "mh", "pe", "simd", "nf", "sf", "out_lanes", "cycles_per_output", "latency_cycles")
DESCRIPTIONS = ("layer.fxpm", "model.fxpm")  # a unit folder's one-layer description, a network folder's model
# Models of FPGA primitives that fxp renders beside a unit (dp16kd.SIM_MODEL): plain file names.
SIM_MODEL = re.compile(r"[A-Za-z0-9_]{1,60}\.v")


def check_identifier(name: object, what: str) -> str:
    """``name`` if it is a Verilog/C++ identifier of at most 63 characters, else an error naming ``what``."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise FxpError(f"{what} {name!r} is not a Verilog identifier (a letter or _, then letters, digits or _, "
                       "at most 63 characters); choose another name")
    return name


def read_sidecar(folder: Path) -> dict:
    """The sidecar of the unit or network folder ``folder``, its names and numbers checked (see the module
    docstring)."""
    # the results fxp sim, fxp run and fxp build write beside the sidecar
    sidecars = [p for p in folder.glob("*.json") if not p.name.startswith(("sim_", "run_")) and p.name != "report.json"]
    if not folder.is_dir() or len(sidecars) != 1 or not any((folder / d).is_dir() for d in DESCRIPTIONS):
        raise FxpError(f"{folder} is not a unit or network folder (one sidecar .json and layer.fxpm or model.fxpm); "
                       "make one with fxp gen unit or fxp gen model")
    try:
        sidecar = json.loads(sidecars[0].read_text())
        top, wrapper, models = sidecar["top"], sidecar["wrapper"], sidecar.get("sim_models", [])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FxpError(f"{sidecars[0]} is not a sidecar of fxp gen unit ({type(e).__name__}: {e}); regenerate the unit "
                       "folder with fxp gen unit") from None
    check_identifier(top, f"{sidecars[0].name}: top")
    check_identifier(wrapper, f"{sidecars[0].name}: wrapper")
    if not isinstance(models, list) or not all(isinstance(m, str) and SIM_MODEL.fullmatch(m) for m in models):
        raise FxpError(f"{sidecars[0].name}: sim_models {models!r} are not plain .v file names in the unit folder; "
                       "regenerate the unit folder with fxp gen unit")
    if sidecar.get("description") not in DESCRIPTIONS or not (folder / sidecar["description"]).is_dir():
        raise FxpError(f"{sidecars[0].name}: description {sidecar.get('description')!r} is not "
                       f"{' or '.join(DESCRIPTIONS)} in the folder; regenerate the folder with fxp gen")
    needed = _COUNTS + _KIND_COUNTS.get(sidecar.get("kind"), _UNIT_COUNTS)
    counts = [k for k in needed if isinstance(sidecar.get(k), bool) or not isinstance(sidecar.get(k), int)
              or sidecar[k] < 0]
    flags = [k for k in ("in_lane_signed", "out_lane_signed") if not isinstance(sidecar.get(k), bool)]
    if counts or flags:  # numbers become C++ constants and Python sizes: nothing else may stand there
        raise FxpError(f"{sidecars[0].name}: {', '.join(counts + flags)} must be whole numbers (signedness: true or "
                       "false); regenerate the unit folder with fxp gen unit")
    if sidecars[0].name != f"{top}.json":
        raise FxpError(f"{sidecars[0].name} describes unit {top!r}; regenerate the unit folder with fxp gen unit")
    return sidecar


def sim_sources(sidecar: dict) -> list[str]:
    """The Verilog files of a unit folder that a simulator compiles: unit, wrapper, primitive models."""
    return [f"{sidecar['top']}.v", f"{sidecar['wrapper']}.v", *sidecar.get("sim_models", [])]
