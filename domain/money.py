"""Money: Decimal SGD with 2 places, ROUND_HALF_UP; GST once on the subtotal. Never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def to_money(value: Decimal | int | str) -> Decimal:
    """Round to the cent, half up. Floats are refused: they cannot carry money exactly."""
    if isinstance(value, float):
        raise TypeError("money is never a float")
    try:
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc


def line_amount(qty: Decimal | int, unit_price: Decimal) -> Decimal:
    """A line's amount is qty x unit price, rounded to the cent once."""
    return to_money(Decimal(qty) * unit_price)


def gst_on(subtotal: Decimal, rate: Decimal) -> Decimal:
    """GST is computed once, on the invoice subtotal, and rounded half up to the cent."""
    return to_money(subtotal * rate)


def money_str(value: Decimal | None) -> str | None:
    """The wire form of an amount: a decimal string with exactly 2 places."""
    return None if value is None else str(to_money(value))


def decimal_str(value: Decimal | None, places: int = 2) -> str | None:
    """A decimal string with at least `places` places (rates keep up to 4 significant decimals)."""
    if value is None:
        return None
    value = Decimal(value)
    exponent = value.normalize().as_tuple().exponent
    shown = max(places, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return f"{value:.{shown}f}"
