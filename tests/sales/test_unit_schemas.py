"""The sales commands as the reconciler and REST use them, and the pure pricing rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import ReadOnlyField, ValidationError
from domain.sales import pricing
from domain.sales.schemas import MeterReadingCreate, TransactionCreate, TransactionRef, TransactionUpdate
from domain.wire import parse

SYNC_EXAMPLE = {
    "customer": 512,  # the reconciler has replaced the client_temp_id "t-17-0001"
    "truck": 3,
    "confirm": True,
    "occurred_at": "2026-11-24T02:10:00Z",
    "meter": {"reading": "1532.40"},
    "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 2}],
    "services": [{"code": "INSTALL", "qty": 1}],
}


def test_the_protocol_example_parses_and_names_its_references() -> None:
    cmd = parse(TransactionCreate, SYNC_EXAMPLE)
    assert (cmd.customer, cmd.meter.reading, cmd.deliveries[0].equipment, cmd.services[0].code) == (
        512,
        Decimal("1532.40"),
        "CYL12.7",
        "INSTALL",
    )
    assert TransactionCreate.references == {"customer": "customer", "truck": "truck"}
    assert TransactionUpdate.references["id"] == "transaction"
    assert TransactionRef.references == {"id": "transaction"}
    assert MeterReadingCreate.references == {"customer": "customer"}


def test_an_update_knows_which_fields_were_sent() -> None:
    cmd = parse(TransactionUpdate, {"id": 4, "base_version": 2, "meter": None, "services": []})
    assert cmd.changed() == {"meter", "services"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"customer": "t-17-0001"}, ValidationError),  # an unresolved temp id never reaches a service
        ({"customer": True}, ValidationError),
        ({"meter": {"reading": "1.005"}}, ValidationError),
        ({"deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": 1.0}]}, ValidationError),
        ({"subtotal": "1.00"}, ReadOnlyField),
        ({"gst": "1.00"}, ReadOnlyField),
        ({"invoice": 5}, ReadOnlyField),
        ({"status": "confirmed"}, ReadOnlyField),
        ({"deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": 1, "price": "1"}]}, ReadOnlyField),
    ],
)
def test_refusals(change: dict, error: type) -> None:
    with pytest.raises(error):
        parse(TransactionCreate, {**SYNC_EXAMPLE, **change})


def test_line_and_gst_rounding_is_half_up() -> None:
    assert pricing.usage_line(Decimal("0.05"), Decimal("0.00"), Decimal("3.1000")).amount == Decimal("0.16")
    assert pricing.totals([Decimal("0.50")], Decimal("0.09")).gst == Decimal("0.05")
    assert pricing.totals([Decimal("38.50")], Decimal("0.09")).gst == Decimal("3.47")
    credit = pricing.half_return_line("CYL9", "CYL 9kg", 1, Decimal("0.25"), Decimal("2.6200"))
    assert credit.amount == Decimal("-0.66")  # -0.655: half away from zero, credits like charges
    assert pricing.usage_line(Decimal("7.00"), None, Decimal("3.2")).amount == Decimal("0.00")


def test_the_kg_rate_falls_back_to_the_cylinder_price_per_kg() -> None:
    assert pricing.kg_rate_for(Decimal("2.6"), Decimal("32.90"), Decimal("12.70")) == Decimal("2.6")
    assert pricing.kg_rate_for(None, Decimal("32.90"), Decimal("12.70")) == Decimal("2.5906")
    assert pricing.kg_rate_for(None, Decimal("32.90"), Decimal("0")) == Decimal("0")


def test_the_id_of_a_new_record_is_the_servers() -> None:
    with pytest.raises(ReadOnlyField):
        parse(TransactionCreate, {**SYNC_EXAMPLE, "id": 7})
    with pytest.raises(ReadOnlyField):
        parse(MeterReadingCreate, {"customer": 1, "reading": "1.00", "occurred_at": "2026-11-24T02:10:00Z", "id": 7})
    assert parse(TransactionUpdate, {"id": 7, "base_version": 1}).id == 7


def test_a_time_at_the_edge_of_the_calendar_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationError):
        parse(MeterReadingCreate, {"customer": 1, "reading": "0", "occurred_at": "0001-01-01T00:00:00+01:01"})
