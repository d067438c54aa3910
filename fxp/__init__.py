"""fxp: from PyTorch to bit-exact FPGA accelerators.

The number core: :class:`Format`, :func:`quantize`, :class:`FxTensor`, dynamic scales
(:class:`ScaleTracker`) and a straight-through :func:`fake_quantize` for training.
"""

from fxp.dynamic import ScaleTracker
from fxp.errors import FxpError
from fxp.format import Format
from fxp.quantize import quantize, requantize
from fxp.rounding import OVERFLOW, ROUNDING
from fxp.ste import fake_quantize
from fxp.tensor import FxTensor

__version__ = "0.1.0"

__all__ = [
    "Format",
    "FxTensor",
    "FxpError",
    "OVERFLOW",
    "ROUNDING",
    "ScaleTracker",
    "fake_quantize",
    "quantize",
    "requantize",
    "__version__",
]
