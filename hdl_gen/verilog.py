"""Verilog emission through Amaranth's back end (its bundled Yosys)."""

from __future__ import annotations

import os

from amaranth.back import verilog


def emit(component, name: str) -> str:
    """The Verilog of ``component`` with top module ``name``; the same component gives the same text.

    Uses the Yosys bundled with Amaranth (``AMARANTH_USE_YOSYS=builtin``): an exported ``YOSYS``
    meant for FPGA builds (the YoWASP one) would otherwise be picked up here too.
    """
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return verilog.convert(component, name=name)
    finally:
        if old is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old
