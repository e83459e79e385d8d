"""The money of a transaction, as pure functions of Decimals (no database, never a float).

Rules (domain spec, "Workflow B" and "Money"):
- usage = current reading - the meter's last billed reading (the reading of the last confirmed sale that
  billed it; the first reading of a meter is a baseline: usage 0);
  usage line = usage x the customer's meter rate.
- `full_deliver`: qty x the model's unit price (or the customer's override).
- `empty_return`: no charge (a line of 0.00, so the invoice shows what was collected).
- `half_return`: a credit of remaining_kg x the customer's rate per kg; the line's unit price is the
  negative rate, so that on every line `amount = round(qty x unit_price)` (qty being the kg here).
  A customer without a kg rate is credited at the full cylinder's price per kg (price / capacity_kg, kept to
  4 places), which is what the gas left in it was sold for.
- services: qty x the catalog fee (or the customer's override).
Each line is rounded to the cent once (ROUND_HALF_UP); the subtotal is the exact sum of the lines; GST is
computed once on the subtotal; total = subtotal + GST.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from domain.money import gst_on, line_amount, to_money

RATE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class PricedLine:
    """One invoice line: `kind` usage | delivery | empty_return | half_return | service."""

    kind: str
    code: str
    description: str
    qty: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    gst_rate: Decimal
    gst: Decimal
    total: Decimal


def usage_of(reading: Decimal, last: Decimal | None) -> Decimal:
    """Meter usage since the last recorded reading; the first reading is the baseline (0)."""
    if last is None:
        return Decimal("0.00")
    return reading - last


def usage_line(reading: Decimal, last: Decimal | None, rate: Decimal) -> PricedLine:
    usage = usage_of(reading, last)
    since = "baseline reading" if last is None else f"{last} to {reading}"
    return PricedLine("usage", "METER", f"Gas usage ({since})", usage, rate, line_amount(usage, rate))


def delivery_line(code: str, name: str, qty: int, unit_price: Decimal) -> PricedLine:
    return PricedLine("delivery", code, f"{name} (full)", Decimal(qty), unit_price, line_amount(qty, unit_price))


def empty_return_line(code: str, name: str, qty: int) -> PricedLine:
    return PricedLine("empty_return", code, f"{name} x{qty} empty returned", Decimal(qty), Decimal("0"), to_money(0))


def kg_rate_for(customer_kg_rate: Decimal | None, cylinder_price: Decimal, capacity_kg: Decimal) -> Decimal:
    """The rate a half-used cylinder's remaining gas is credited at (see the module docstring)."""
    if customer_kg_rate is not None:
        return customer_kg_rate
    if capacity_kg <= 0:
        return Decimal("0")
    return (cylinder_price / capacity_kg).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def half_return_line(code: str, name: str, qty: int, remaining_kg: Decimal, kg_rate: Decimal) -> PricedLine:
    description = f"{name} x{qty} part-used returned, {remaining_kg} kg remaining credited"
    return PricedLine("half_return", code, description, remaining_kg, -kg_rate, line_amount(remaining_kg, -kg_rate))


def service_line(code: str, name: str, qty: int, fee: Decimal) -> PricedLine:
    return PricedLine("service", code, name, Decimal(qty), fee, line_amount(qty, fee))


def totals(amounts: list[Decimal], gst_rate: Decimal) -> Totals:
    """Subtotal = the exact sum of the (already rounded) line amounts; GST once on it, half up."""
    subtotal = to_money(sum(amounts, Decimal("0")))
    gst = gst_on(subtotal, gst_rate)
    return Totals(subtotal, gst_rate, gst, subtotal + gst)
