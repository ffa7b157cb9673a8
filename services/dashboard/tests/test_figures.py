"""A figure's display: the exact ratio rounded half up to 2 decimals (rates in percent), and
its value the float nearest the exact ratio."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from tuoyu_dashboard.indicators import figure


def rounded_half_up(ratio: Fraction) -> str:
    hundredths = ratio * 100
    whole = hundredths.numerator // hundredths.denominator
    if hundredths - whole >= Fraction(1, 2):
        whole += 1
    return f"{whole // 100}.{whole % 100:02d}"


@given(st.integers(0, 10**12), st.integers(1, 10**12), st.sampled_from(["percent", "number"]))
def test_the_display_is_the_exact_ratio_rounded_half_up(num, den, unit):
    shown = figure(num, den, unit)
    ratio = Fraction(num, den) * (100 if unit == "percent" else 1)
    assert shown["display"] == rounded_half_up(ratio) + ("%" if unit == "percent" else "")
    assert shown["value"] == float(Fraction(num, den))
    assert (shown["numerator"], shown["denominator"]) == (num, den)


def test_no_denominator_no_figure():
    assert figure(3, 0, "percent")["display"] == "—"
    assert figure(None, 5, "number")["value"] is None
    assert figure(2, 3, "percent")["display"] == "66.67%"
    assert figure(1, 8, "percent")["display"] == "12.50%"
    assert figure(1, 200, "number")["display"] == "0.01"  # 0.005 rounds half up
