"""Fixed-point layers: PyTorch modules that train inside the dynamic fixed-point simulator.

Three modes (``FxConfig.mode``):

``float``
    Plain float32: the baseline, with the same modules and recipe.
``qat``
    Quantization-aware training: float master weights, weights and activations rounded in the forward
    pass to their own dynamic formats, straight-through gradients in float.
``fixed``
    Courbariaux et al. (2014): activations and back-propagated gradients are fixed point (each tensor
    its own dynamic scale), and the parameters themselves are stored in fixed point: every update is
    rounded into the parameter's format (``FixedPointSGD``). No float master copy.

Every fixed-point value travels as a float tensor whose values lie on the format's grid (exact for
words up to 24 bits). A compute layer (``FxLinear``, ``FxConv2d``) multiplies such values, models the
accumulator (``acc_bits`` wide, binary point at input + weight fractional bits, ``acc_overflow``
saturate or wrap) and rounds its output to its activation format. Accumulation runs in float32 by
default (fast; partial sums carry float32 rounding before the accumulator is modeled) or, with
``exact=True``, in float64, which is exact for accumulators up to 53 bits.

Scales revise themselves every ``update_interval`` batches from the overflow-rate rule; the trainer
calls :func:`step_trackers` after each optimizer step so that all processes revise together.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from fxp.dynamic import ScaleTracker
from fxp.errors import FxpError
from fxp.format import Format
from fxp.quantize import quantize_to_grid
from fxp.rounding import OVERFLOW, ROUNDING
from fxp.ste import fake_quantize

MODES = ("float", "qat", "fixed")


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting takes: ``lo..hi`` (whole numbers, with ``whole``) or the interval from
    ``lo`` to ``hi``, an end excluded where ``lo_open`` / ``hi_open`` say so. Defined once beside the check
    that uses it; the CLI bounds its options with the same objects."""

    lo: float
    hi: float
    whole: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        if self.whole:
            return f"{self.lo}..{self.hi}"
        return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"

    def __contains__(self, v: object) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if self.whole else (int, float)):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return (self.lo < v if self.lo_open else self.lo <= v) and (v < self.hi if self.hi_open else v <= self.hi)

    def check(self, name: str, v: object, unit: str = "") -> None:
        """Raise unless ``v`` is in bounds: ``{name} must be a whole number{unit} in 2..64, got ...``."""
        if v not in self:
            raise FxpError(f"{name} must be {'a whole number' if self.whole else 'a number'}{unit} in {self}, got {v!r}")


# The ranges of FxConfig's numbers (fxp train's and fxp sweep's options take theirs from here)
WORD_BITS = Bounds(2, 64, whole=True)  # every word, sign included
OVERFLOW_RATE = Bounds(0, 1, hi_open=True)  # as ScaleTracker takes it
UPDATE_INTERVAL = Bounds(1, 1 << 20, whole=True)


@dataclass
class FxConfig:
    """Number formats and modes for a model.

    Parameters
    ----------
    mode: ``float``, ``qat`` or ``fixed``.
    act_bits: word of every activation (sign included).
    grad_bits: word of every back-propagated gradient (``fixed`` mode).
    update_bits: word of every stored parameter (``fixed`` mode): updates are rounded into it.
    weight_bits: word of the forward weights in ``qat`` mode.
    acc_bits, acc_overflow: the accumulator of every compute layer.
    rounding: rounding of activations and gradients.
    update_rounding: rounding of parameter updates (``stochastic`` keeps small updates alive).
    max_overflow_rate, update_interval: the overflow-rate rule of every dynamic scale. Courbariaux et
        al. revise every 100 batches; here the default is every batch: early in training activations
        and gradients grow by orders of magnitude within a few hundred steps, and a scale that moves
        one bit per 10 or 100 batches lags behind them (measured: LeNet-5 on Fashion-MNIST stalls at
        10 % with an interval of 10, even with 16-bit words, and matches float with 1).
    exact: accumulate in float64 (exact) instead of float32.
    """

    mode: str = "fixed"
    act_bits: int = 10
    grad_bits: int = 10
    update_bits: int = 12
    weight_bits: int = 8
    acc_bits: int = 32
    acc_overflow: str = "saturate"
    rounding: str = "nearest_even"
    update_rounding: str = "stochastic"
    max_overflow_rate: float = 1e-4
    update_interval: int = 1
    exact: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FxpError(f"mode={self.mode!r} is not a training mode; use one of {', '.join(MODES)}")
        for name in ("act_bits", "grad_bits", "update_bits", "weight_bits", "acc_bits"):
            WORD_BITS.check(name, getattr(self, name), " of bits")
        OVERFLOW_RATE.check("max_overflow_rate", self.max_overflow_rate)
        UPDATE_INTERVAL.check("update_interval", self.update_interval, " of batches")
        for name in ("rounding", "update_rounding"):
            if getattr(self, name) not in ROUNDING:
                raise FxpError(f"{name}={getattr(self, name)!r} is not a rounding mode; use one of {', '.join(ROUNDING)}")
        if self.acc_overflow not in OVERFLOW:
            raise FxpError(f"acc_overflow={self.acc_overflow!r} is not an overflow mode; use one of {', '.join(OVERFLOW)}")

    def tracker(self, word_bits: int) -> ScaleTracker:
        return ScaleTracker(word_bits, True, None, self.max_overflow_rate, self.update_interval)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FxConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --- format tags: the binary point of the values a tensor holds, read by the next accumulator ---------
def tag(t: torch.Tensor, frac_bits: int | None) -> torch.Tensor:
    t._fx_frac = frac_bits
    return t


def frac_of(t: torch.Tensor) -> int | None:
    return getattr(t, "_fx_frac", None)


class _QuantAct(torch.autograd.Function):
    """Forward: round to the activation format. Backward: round the gradient to the gradient format."""

    @staticmethod
    def forward(ctx, x, quant):  # noqa: D102
        ctx.quant = quant
        y, _ = quantize_to_grid(x, quant.act.fmt, quant.cfg.rounding)
        return y

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        q = ctx.quant
        if q.grad is None:
            return g, None
        g = g.contiguous()
        q.grad.observe(g, update=False)
        y, _ = quantize_to_grid(g, q.grad.fmt, q.cfg.rounding)
        return y, None


class _Tracked(nn.Module):
    """A module whose dynamic scales (``trackers()``) travel in its state_dict as extra state."""

    def trackers(self) -> dict[str, ScaleTracker]:
        raise NotImplementedError

    def get_extra_state(self) -> dict:
        return {k: t.state_dict() for k, t in self.trackers().items()}

    def set_extra_state(self, state: dict) -> None:
        for k, t in self.trackers().items():
            t.load_state_dict(state[k])


class FxQuant(_Tracked):
    """Rounds a tensor to its own dynamic activation format (and its gradient, in ``fixed`` mode).

    Members
    -------
    act: the activation's :class:`~fxp.ScaleTracker`.
    grad: the gradient's tracker (``fixed`` mode), else None.
    """

    def __init__(self, cfg: FxConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.act = cfg.tracker(cfg.act_bits)
        self.grad = cfg.tracker(cfg.grad_bits) if cfg.mode == "fixed" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.mode == "float":
            return x
        if self.training:
            self.act.observe(x.detach(), update=False)
        elif self.act.frac_bits is None:
            self.act.init_max_abs(x.detach())
        y = _QuantAct.apply(x, self)
        if y.dtype != torch.float32:  # exact accumulation ran in float64; grid values fit float32
            y = y.float()
        return tag(y, self.act.frac_bits)

    def trackers(self) -> dict[str, ScaleTracker]:
        return {"act": self.act, **({"grad": self.grad} if self.grad is not None else {})}


class _AccFit(torch.autograd.Function):
    """Accumulator overflow (saturate or wrap to ``acc_bits``); identity gradient."""

    @staticmethod
    def forward(ctx, y, fmt: Format, overflow: str):  # noqa: D102
        lo, hi = (float(v) for v in torch.aminmax(y))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise FxpError("training diverged: an accumulator holds inf or NaN; lower the learning rate (Recipe.lr) "
                           "or widen the formats")
        if fmt.min <= lo and hi <= fmt.max:
            return y
        if overflow == "saturate":
            return y.clamp(fmt.min, fmt.max)
        scale = math.ldexp(1.0, fmt.frac_bits)
        span = math.ldexp(1.0, fmt.word_bits)
        raw = torch.remainder(y.double() * scale - fmt.raw_min, span) + fmt.raw_min
        return (raw / scale).to(y.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g, None, None


class _FxParams(_Tracked):
    """Shared parameter handling of the compute layers: one dynamic format per parameter."""

    cfg: FxConfig

    def _init_param_trackers(self) -> None:
        word = {"float": 32, "qat": self.cfg.weight_bits, "fixed": self.cfg.update_bits}[self.cfg.mode]
        # (in qat the bias goes straight onto the accumulator grid, so only fixed mode tracks it)
        self.ptrack = {n: self.cfg.tracker(min(word, 32)) for n, _ in self.named_parameters(recurse=False)
                       if n != "bias" or self.cfg.mode != "qat"}

    def qparam(self, name: str) -> torch.Tensor:
        """The parameter as the forward pass sees it."""
        p = getattr(self, name)
        if p is None or self.cfg.mode == "float" or name not in self.ptrack:
            return p  # (a qat bias is rounded onto the accumulator grid in accumulate())
        t = self.ptrack[name]
        if self.cfg.mode == "fixed":
            if t.frac_bits is None:
                snap_parameter(p, t, self.cfg.rounding)
            return p
        if self.training:  # qat: float master weight, rounded forward, straight-through backward
            t.observe(p.detach(), update=False)
        elif t.frac_bits is None:
            t.init_max_abs(p.detach())
        return fake_quantize(p, t.fmt, self.cfg.rounding)

    def accumulate(self, x: torch.Tensor, op, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """``op(x, w, b)`` with the accumulator modeled; the output goes to ``self.out``.

        The bias is added inside the accumulator, as hardware does: rounded onto the accumulator's
        grid (binary point at input + weight fractional bits).
        """
        if self.cfg.mode == "float":
            return op(x, w, b)
        in_frac = frac_of(x)
        if self.cfg.exact:  # float64 holds accumulators up to 53 bits exactly
            x, w, b = x.double(), w.double(), None if b is None else b.double()
        acc = None
        if in_frac is not None:
            acc = Format(self.cfg.acc_bits, in_frac + self.ptrack["weight"].frac_bits)
            if b is not None:
                b = fake_quantize(b, acc, "nearest_up")
        y = op(x, w, b)
        if acc is not None and self.cfg.acc_bits < 64:
            y = _AccFit.apply(y, acc, self.cfg.acc_overflow)
        return self.out(y)

    def trackers(self) -> dict[str, ScaleTracker]:
        return dict(self.ptrack)


@torch.no_grad()
def snap_parameter(p: torch.Tensor, tracker: ScaleTracker, rounding: str) -> None:
    """Put a parameter onto its fixed-point grid in place (max-abs scale if it has none yet)."""
    if tracker.frac_bits is None:
        tracker.init_max_abs(p)
    p.copy_(quantize_to_grid(p.detach(), tracker.fmt, rounding)[0])


class FxLinear(_FxParams):
    """``nn.Linear`` in fixed point: quantized weights, modeled accumulator, quantized output.

    Members: ``weight``, ``bias``, ``ptrack`` (parameter trackers), ``out`` (output :class:`FxQuant`).
    """

    def __init__(self, in_features: int, out_features: int, cfg: FxConfig, bias: bool = True) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias=bias)  # PyTorch's own initialization
        self.weight, self.bias = ref.weight, ref.bias
        self.in_features, self.out_features = in_features, out_features
        self.cfg = cfg
        self.out = FxQuant(cfg)
        self._init_param_trackers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.accumulate(x, F.linear, self.qparam("weight"), self.qparam("bias"))


class FxConv2d(_FxParams):
    """``nn.Conv2d`` in fixed point (see :class:`FxLinear`)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, cfg: FxConfig, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        ref = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
        self.weight, self.bias = ref.weight, ref.bias
        self.in_channels, self.out_channels, self.kernel_size = in_ch, out_ch, kernel
        self.stride, self.padding = stride, padding
        self.cfg = cfg
        self.out = FxQuant(cfg)
        self._init_param_trackers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def conv(x, w, b):
            return F.conv2d(x, w, b, self.stride, self.padding)

        return self.accumulate(x, conv, self.qparam("weight"), self.qparam("bias"))


class FxBatchNorm(_FxParams):
    """Batch normalization over channels (dim 1) with fixed-point scale and shift, quantized output.

    The statistics are computed and kept in float (as running averages); for inference the
    export folds them into the preceding layer or into integer thresholds.
    """

    def __init__(self, num_features: int, cfg: FxConfig, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.cfg = cfg
        self.out = FxQuant(cfg)
        self._init_param_trackers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.batch_norm(x, self.running_mean, self.running_var, self.qparam("weight"), self.qparam("bias"),
                         self.training, self.momentum, self.eps)
        return self.out(y)


class FxReLU(nn.Module):
    """ReLU; keeps the grid, so keeps the format tag."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tag(F.relu(x), frac_of(x))


class FxMaxPool2d(nn.Module):
    def __init__(self, kernel: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride or kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tag(F.max_pool2d(x, self.kernel, self.stride), frac_of(x))


class FxAvgPool2d(nn.Module):
    """Average pooling; the mean leaves the grid, so the output is rounded to its own format."""

    def __init__(self, kernel: int, cfg: FxConfig, stride: int | None = None) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride or kernel
        self.out = FxQuant(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.avg_pool2d(x, self.kernel, self.stride))


class FxFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tag(x.flatten(1), frac_of(x))


def named_trackers(model: nn.Module) -> dict[str, ScaleTracker]:
    """Every dynamic scale in the model, by ``module.kind`` name (``fc1.out.act``, ``fc1.weight``)."""
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, (FxQuant, _FxParams)):
            for k, t in m.trackers().items():
                out[f"{mname}.{k}" if mname else k] = t
    return out


def step_trackers(model: nn.Module) -> None:
    """Apply the overflow-rate rule wherever an update interval has gathered (after each step)."""
    for t in named_trackers(model).values():
        t.maybe_update()


def snap_model(model: nn.Module) -> None:
    """``fixed`` mode: put every parameter on its fixed-point grid before training starts."""
    for m in model.modules():
        if isinstance(m, _FxParams) and m.cfg.mode == "fixed":
            for name, t in m.ptrack.items():
                snap_parameter(getattr(m, name), t, m.cfg.rounding)


class FixedPointSGD(torch.optim.Optimizer):
    """SGD whose stored parameters stay in fixed point (Courbariaux et al. 2014).

    Each step computes ``p - lr * (momentum buffer)`` and rounds it into the parameter's dynamic
    format with ``update_rounding``; the parameter's tracker counts the overflows of the new values.
    The momentum buffer is itself kept in the parameter's word width with a dynamic scale of its own.
    """

    def __init__(self, model: nn.Module, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        self.owners: dict[torch.Tensor, tuple[ScaleTracker, FxConfig]] = {}
        for m in model.modules():
            if isinstance(m, _FxParams):
                for name, t in m.ptrack.items():
                    self.owners[getattr(m, name)] = (t, m.cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        missing = [p for p in params if p not in self.owners]
        if missing:
            raise FxpError("FixedPointSGD needs every parameter in an fxp layer; build the model with fxp.models")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.generator = generator

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                tracker, cfg = self.owners[p]
                d = p.grad
                if wd:
                    d = d + wd * p
                if mom:
                    state = self.state[p]
                    if "buf" not in state:
                        state["buf_track"] = cfg.tracker(cfg.update_bits)
                        state["buf"] = torch.zeros_like(p)
                    buf = mom * state["buf"] + d
                    state["buf_track"].observe(buf, update=False)
                    state["buf_track"].maybe_update()
                    buf, _ = quantize_to_grid(buf, state["buf_track"].fmt, cfg.update_rounding, generator=self.generator)
                    state["buf"] = buf
                    d = buf
                new = p - lr * d
                tracker.observe(new, update=False)
                tracker.maybe_update()
                p.copy_(quantize_to_grid(new, tracker.fmt, cfg.update_rounding, generator=self.generator)[0])
