from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import decimal_str, gst_on, line_amount, money_str, to_money


def test_half_cent_rounds_up() -> None:
    assert to_money("0.005") == Decimal("0.01")
    assert to_money("2.345") == Decimal("2.35")
    assert to_money("-2.345") == Decimal("-2.35")  # half away from zero
    assert to_money("2.344") == Decimal("2.34")


def test_gst_once_on_the_subtotal() -> None:
    assert gst_on(Decimal("100.00"), Decimal("0.09")) == Decimal("9.00")
    assert gst_on(Decimal("32.90"), Decimal("0.09")) == Decimal("2.96")  # 2.961
    assert gst_on(Decimal("0.50"), Decimal("0.09")) == Decimal("0.05")  # 0.045 -> 0.05


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        to_money(0.1)  # type: ignore[arg-type]


def test_wire_strings() -> None:
    assert money_str(Decimal("12.7")) == "12.70"
    assert decimal_str(Decimal("3.2000")) == "3.20"
    assert decimal_str(Decimal("3.2450")) == "3.245"
    assert decimal_str(None) is None


@given(st.integers(min_value=1, max_value=1000), st.decimals(min_value="0", max_value="10000", places=2))
def test_line_amount_is_exact(qty: int, price: Decimal) -> None:
    assert line_amount(qty, price) == (qty * price).quantize(Decimal("0.01"))
