"""One class per op of the integer model description: its fields, shape, arithmetic and export.

Importing this package imports every module in it, so each op class defined here registers itself;
see :mod:`fxp.ops.base` for what an op class declares, and docs/ARCHITECTURE.md for how to add one.
"""

import importlib
import pkgutil

from fxp.ops.base import BITS, OPS, POPCOUNT, QUANTIZERS, Activation, ArrayField, Field, InputQuantizer, Op

for _module in pkgutil.iter_modules(__path__):  # sorted by name: the registries' order is stable
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BITS", "OPS", "POPCOUNT", "QUANTIZERS", "Activation", "ArrayField", "Field", "InputQuantizer", "Op"]
