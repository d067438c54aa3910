"""Verilog emission through Amaranth's back end (its bundled Yosys)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import amaranth
from amaranth.back import verilog

# Source locations are kept (they say which line of which generator made a signal) but relative to
# the folder above their package (``hdl_gen/xnor.py:296``, ``amaranth/lib/stream.py:55``): the same
# unit gives the same bytes wherever fxp is installed or run. A file outside both keeps its name only.
# (the longer root first: a virtualenv may sit inside the project folder)
_ROOTS = tuple(sorted({str(Path(p).resolve().parent.parent) + os.sep for p in (__file__, amaranth.__file__)}, key=len,
                     reverse=True))
_SRC = re.compile(r'src = "([^"]*)"')


def _relative(location: str) -> str:
    for root in _ROOTS:
        if location.startswith(root):
            return location[len(root):]
    return os.path.basename(location) if os.path.isabs(location) else location


def relative_sources(text: str) -> str:
    """``text`` with every ``src`` attribute's paths made relative (see above)."""
    return _SRC.sub(lambda m: 'src = "' + "|".join(_relative(loc) for loc in m.group(1).split("|")) + '"', text)


def emit(component, name: str) -> str:
    """The Verilog of ``component`` with top module ``name``; the same component gives the same text.

    Uses the Yosys bundled with Amaranth (``AMARANTH_USE_YOSYS=builtin``): an exported ``YOSYS``
    meant for FPGA builds (the YoWASP one) would otherwise be picked up here too.
    """
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return relative_sources(verilog.convert(component, name=name))
    finally:
        if old is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old
