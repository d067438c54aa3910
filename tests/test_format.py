import pytest
import torch

from fxp import Format, FxpError, quantize


def test_properties():
    f = Format(16, 8)
    assert (f.int_bits, f.raw_min, f.raw_max) == (8, -32768, 32767)
    assert (f.min, f.max, f.resolution) == (-128.0, 32767 / 256, 1 / 256)
    u = Format(8, 0, signed=False)
    assert (u.raw_min, u.raw_max, u.min, u.max) == (0, 255, 0.0, 255.0)
    assert Format(8, -2).resolution == 4.0 and Format(8, -2).max == 127 * 4
    assert Format(4, 10).max == 7 / 1024


@pytest.mark.parametrize(
    "fmt,dtype",
    [("s8.0", torch.int8), ("u7.0", torch.int8), ("u8.3", torch.int16), ("s16.1", torch.int16),
     ("s17.0", torch.int32), ("u31.0", torch.int32), ("s33.0", torch.int64), ("s64.0", torch.int64), ("u63.0", torch.int64)],
)
def test_narrowest_dtype(fmt, dtype):
    assert Format.parse(fmt).dtype == dtype


@pytest.mark.parametrize("text", ["s16.8", "u8.0", "s8.-2", "s1.0", "s64.70", "u63.-5"])
def test_text_round_trip(text):
    f = Format.parse(text)
    assert str(f) == text and Format.parse(str(f)) == f


def test_equality_and_hash():
    assert Format(8, 4) == Format.parse("s8.4") and hash(Format(8, 4)) == hash(Format.parse("s8.4"))
    assert Format(8, 4) != Format(8, 4, signed=False)
    assert len({Format(8, 4), Format.parse("s8.4"), Format(8, 5)}) == 2


@pytest.mark.parametrize(
    "args,match",
    [((0, 0), r"word_bits must be in 1\.\.64, got 0"), ((65, 0), r"word_bits must be in 1\.\.64, got 65"),
     ((3.5, 0), r"word_bits must be a whole number, got 3\.5"), ((8, 1.5), r"frac_bits must be a whole number"),
     ((64, 0, False), r"word_bits must be in 1\.\.63"), ((True, 0), "word_bits must be a whole number")],
)
def test_bad_formats(args, match):
    with pytest.raises(FxpError, match=match):
        Format(*args)


@pytest.mark.parametrize("text", ["16.8", "s16", "x8.0", "s8.x", "", "s16.8.1"])
def test_bad_text(text):
    with pytest.raises(FxpError, match="is not of the form s<word>.<frac>"):
        Format.parse(text)


def test_bad_modes_and_inputs():
    with pytest.raises(FxpError, match="rounding='round' is not a rounding mode; use one of nearest_even"):
        quantize([1.0], "s8.0", rounding="round")
    with pytest.raises(FxpError, match="overflow='clip' is not an overflow mode; use one of saturate, wrap"):
        quantize([1.0], "s8.0", overflow="clip")
    with pytest.raises(FxpError, match=r"input has 2 NaN value\(s\) \(first at index \(1,\)\)"):
        quantize(torch.tensor([1.0, float("nan"), float("nan")]), "s8.0")
    with pytest.raises(FxpError, match="cannot wrap an infinite input"):
        quantize(torch.tensor([float("inf")]), "s8.0", overflow="wrap")
    with pytest.raises(FxpError, match="format must be a fxp.Format"):
        quantize([1.0], 8)
    a, b = quantize(torch.zeros(3), "s8.0"), quantize(torch.zeros(4), "s8.0")
    with pytest.raises(FxpError, match=r"\+: shapes \(3,\) and \(4,\) do not broadcast"):
        a + b
    with pytest.raises(FxpError, match=r"do not agree on the inner dimension \(3 vs 4\)"):
        quantize(torch.zeros(2, 3), "s8.0") @ quantize(torch.zeros(4, 2), "s8.0")
    with pytest.raises(FxpError, match="takes two FxTensors, got float; quantize it first"):
        a * 2.0
