"""Workflow B through the services and the REST API: meter math, each delivery kind, services, price
overrides, rounding, a hand-computed invoice, the checks (and that a refused sale writes nothing)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import select, update

from domain.audit.models import AuditEntry
from domain.catalog.models import Customer, CustomerPrice, EquipmentModel, Meter, Service, Truck
from domain.db import Database
from domain.errors import DomainError, InsufficientStock, InvalidState, MeterRegression, NotFound, ValidationError
from domain.feed.models import FeedEntry
from domain.invoicing.models import Invoice
from domain.sales.docs import transaction_doc
from domain.sales.models import MeterReading, Transaction
from domain.sales.schemas import MeterReadingCreate
from domain.sales.services import create_transaction, record_meter_reading
from domain.service import Call
from domain.wire import parse
from tests.support.sales_support import (
    ADMIN,
    DRIVER1,
    count,
    empty,
    full,
    half,
    run,
    sale,
    sale_payload,
    sell,
    site_stock,
    traces,
    truck_stock,
    when,
)


def sg_date(moment: str) -> str:
    """The business date (Asia/Singapore) of an RFC 3339 time."""
    return datetime.fromisoformat(moment).astimezone(ZoneInfo("Asia/Singapore")).date().isoformat()


def demo_feed_doc(client: Any, entity: str, entity_id: int) -> Any:
    db = client.app.state.lpg.db
    row = db.read(
        lambda s: s.scalars(select(FeedEntry).where(FeedEntry.entity == entity, FeedEntry.entity_id == entity_id)).one()
    )
    return orjson.loads(row.doc)


def reading(db: Database, customer: int, value: str) -> Any:
    cmd = parse(MeterReadingCreate, {"customer": customer, "reading": value, "occurred_at": when()})
    return run(db, lambda call: record_meter_reading(call, cmd))


def invoice_of(db: Database, trx_id: int) -> Invoice:
    def read(s: Any) -> Invoice:
        inv = s.execute(select(Invoice).where(Invoice.transaction_id == trx_id)).scalar_one()
        _ = list(inv.lines), list(inv.payments)
        return inv

    return db.read(read)


# -- meter math ----------------------------------------------------------------------------------------


def test_first_reading_is_the_baseline_then_usage_is_billed_at_the_customer_rate(demo: Database) -> None:
    first = sell(demo, meter="100.00")
    assert (first.record.usage, first.record.usage_amount, first.record.total) == (0, Decimal("0.00"), 0)
    second = sell(demo, meter="112.35")
    trx = second.record
    # 12.35 x 3.2000 = 39.52; GST 9% of 39.52 = 3.5568 -> 3.56
    assert (trx.usage, trx.usage_amount, trx.subtotal, trx.gst, trx.total) == (
        Decimal("12.35"),
        Decimal("39.52"),
        Decimal("39.52"),
        Decimal("3.56"),
        Decimal("43.08"),
    )
    readings = demo.read(lambda s: s.scalars(select(MeterReading).order_by(MeterReading.id)).all())
    assert [(r.previous_reading, r.reading, r.usage, r.transaction_id) for r in readings] == [
        (None, Decimal("100.00"), Decimal("0.00"), first.id),
        (Decimal("100.00"), Decimal("112.35"), Decimal("12.35"), trx.id),
    ]
    meter = demo.read(lambda s: s.scalars(select(Meter).where(Meter.customer_id == 1)).one())
    assert meter.last_reading == Decimal("112.35") and meter.version == 3


def test_an_equal_reading_is_usage_zero(demo: Database) -> None:
    sell(demo, meter="50.00")
    assert sell(demo, meter="50.00").record.usage == 0


def test_meter_regression_is_refused_naming_both_readings_and_writes_nothing(demo: Database) -> None:
    sell(demo, meter="200.00")
    before = traces(demo)
    with pytest.raises(MeterRegression) as caught:
        sell(demo, meter="199.99", deliveries=[full("CYL9", 1)])
    assert caught.value.details["last"] == "200.00" and caught.value.details["current"] == "199.99"
    assert traces(demo) == before


def test_a_reading_without_a_sale_is_judged_but_the_sale_bills_from_the_last_billed_reading(demo: Database) -> None:
    outcome = reading(demo, 2, "10.00")  # the meter's first reading: its baseline
    assert outcome.entity == "meter_reading" and outcome.record.usage == 0
    assert reading(demo, 2, "15.50").record.usage == Decimal("5.50")  # since the last recorded: not billed
    with pytest.raises(MeterRegression):
        reading(demo, 2, "15.49")
    # the next sale bills everything since the baseline, inspections or not
    assert sell(demo, customer=2, meter="16.50").record.usage == Decimal("6.50")


def test_a_customer_without_a_meter_gets_one_with_the_first_reading_as_baseline(demo: Database) -> None:
    def add(uow: Any) -> int:
        c = Customer(name="New Stall", address="1 New Rd", meter_rate=Decimal("3.0000"))
        uow.session.add(c)
        uow.session.flush()
        return c.id

    cid = demo.run(add)
    outcome = sell(demo, customer=cid, meter="7.00")
    assert outcome.record.usage == 0
    meters = demo.read(lambda s: s.scalars(select(Meter).where(Meter.customer_id == cid)).all())
    assert [(m.serial, m.last_reading, m.active) for m in meters] == [(None, Decimal("7.00"), True)]
    assert sell(demo, customer=cid, meter="8.00").record.usage_amount == Decimal("3.00")


def test_a_customer_whose_meters_are_all_inactive_cannot_take_a_reading(demo: Database) -> None:
    demo.run(lambda uow: uow.session.execute(update(Meter).where(Meter.customer_id == 3).values(active=False)))
    with pytest.raises(InvalidState):
        sell(demo, customer=3, meter="1.00")
    with pytest.raises(InvalidState):
        reading(demo, 3, "1.00")
    # a sale without a reading is fine
    assert sell(demo, customer=3, services=[{"code": "DELIVERY", "qty": 1}]).record.status == "confirmed"


# -- delivery kinds ------------------------------------------------------------------------------------


def test_full_deliver_moves_full_cylinders_from_truck_to_site_at_the_unit_price(demo: Database) -> None:
    trx = sell(demo, deliveries=[full("CYL12.7", 2)]).record
    assert truck_stock(demo)["CYL12.7"] == (18, 0)
    assert site_stock(demo) == {"CYL12.7": 2}
    line = trx.deliveries[0]
    assert (line.unit_price, line.amount, trx.subtotal, trx.gst, trx.total) == (
        Decimal("32.90"),
        Decimal("65.80"),
        Decimal("65.80"),
        Decimal("5.92"),  # 5.922
        Decimal("71.72"),
    )


def test_empty_return_moves_site_cylinders_to_the_truck_as_empties_free_of_charge(demo: Database) -> None:
    sell(demo, deliveries=[full("CYL9", 3)])
    trx = sell(demo, deliveries=[empty("CYL9", 2)]).record
    assert truck_stock(demo)["CYL9"] == (17, 2)
    assert site_stock(demo) == {"CYL9": 1}
    assert (trx.deliveries[0].amount, trx.total) == (Decimal("0.00"), Decimal("0.00"))


def test_half_return_moves_the_cylinder_back_and_credits_the_remaining_gas(demo: Database) -> None:
    sell(demo, deliveries=[full("CYL14", 2)])
    trx = sell(demo, deliveries=[half("CYL14", 2, "3.50"), full("CYL14", 2)]).record
    assert truck_stock(demo)["CYL14"] == (16, 2)
    assert site_stock(demo) == {"CYL14": 2}
    credit, sold = trx.deliveries
    # 3.50 kg x 2.6000 = 9.10 credited; 2 x 35.90 = 71.80
    assert (credit.unit_price, credit.amount) == (Decimal("-2.6000"), Decimal("-9.10"))
    assert (sold.amount, trx.subtotal, trx.gst, trx.total) == (
        Decimal("71.80"),
        Decimal("62.70"),
        Decimal("5.64"),  # 5.643
        Decimal("68.34"),
    )


def test_half_return_without_a_customer_kg_rate_is_credited_at_the_cylinder_price_per_kg(demo: Database) -> None:
    demo.run(lambda uow: uow.session.execute(update(Customer).where(Customer.id == 4).values(kg_rate=None)))
    trx = sell(demo, customer=4, deliveries=[half("CYL12.7", 1, "5.00")]).record
    # 32.90 / 12.70 = 2.590551... -> 2.5906 per kg; 5.00 kg -> 12.953 -> 12.95
    assert (trx.deliveries[0].unit_price, trx.deliveries[0].amount) == (Decimal("-2.5906"), Decimal("-12.95"))


def test_site_may_go_below_zero_with_a_warning(demo: Database) -> None:
    outcome = sell(demo, deliveries=[empty("CYL50", 2)])
    assert outcome.record.status == "confirmed"
    assert [w["code"] for w in outcome.warnings] == ["negative_site_inventory"]
    assert outcome.warnings[0]["details"] == {
        "customer": 1,
        "equipment": "CYL50",
        "on_site": 0,
        "after": -2,
    }
    assert site_stock(demo) == {"CYL50": -2}
    assert truck_stock(demo)["CYL50"] == (20, 2)


def test_the_truck_may_not_go_below_zero_and_a_refused_sale_writes_nothing(demo: Database) -> None:
    sell(demo, deliveries=[full("CYL9", 15)])
    before = traces(demo)
    with pytest.raises(InsufficientStock) as caught:
        sell(demo, meter="5.00", deliveries=[full("CYL9", 3), full("CYL9", 3)], services=[{"code": "INSTALL"}])
    assert caught.value.details == {
        "place": "truck",
        "truck": 1,
        "equipment": "CYL9",
        "available": 5,
        "requested": 6,
    }
    assert traces(demo) == before


# -- services and prices -------------------------------------------------------------------------------


def test_services_are_charged_at_the_catalog_fee(demo: Database) -> None:
    trx = sell(demo, services=[{"code": "INSTALL", "qty": 2}, {"code": "DELIVERY"}, {"code": 2, "qty": 1}]).record
    assert [(s.unit_price, s.amount) for s in trx.services] == [
        (Decimal("30.00"), Decimal("60.00")),
        (Decimal("5.00"), Decimal("5.00")),
        (Decimal("50.00"), Decimal("50.00")),
    ]
    assert (trx.subtotal, trx.gst, trx.total) == (Decimal("115.00"), Decimal("10.35"), Decimal("125.35"))


def test_customer_price_overrides_replace_the_catalog_price(demo: Database) -> None:
    def overrides(uow: Any) -> None:
        uow.session.add_all(
            [
                CustomerPrice(customer_id=2, equipment_id=2, price=Decimal("29.50")),
                CustomerPrice(customer_id=2, service_id=1, price=Decimal("0.00")),
            ]
        )

    demo.run(overrides)
    mine = sell(demo, customer=2, deliveries=[full("CYL12.7", 3)], services=[{"code": "INSTALL"}]).record
    other = sell(demo, customer=3, deliveries=[full("CYL12.7", 3)], services=[{"code": "INSTALL"}]).record
    assert [line.amount for line in mine.deliveries + mine.services] == [Decimal("88.50"), Decimal("0.00")]
    assert [line.amount for line in other.deliveries + other.services] == [Decimal("98.70"), Decimal("30.00")]


def test_sales_in_one_unit_price_each_item_from_its_override_however_it_is_named_and_whatever_was_read(
    demo: Database,
) -> None:
    # One unit (a sync batch) prices many sales; the records and prices it read for one sale are remembered
    # for the next. Whatever the order, each line is the customer's own price for the item, else the catalog's.
    def setup(uow: Any) -> dict[str, Any]:
        s = uow.session
        item = {e.code: e for e in s.scalars(select(EquipmentModel))}
        fee = {v.code: v for v in s.scalars(select(Service))}
        s.add_all(
            [
                CustomerPrice(customer_id=2, equipment_id=item["CYL12.7"].id, price=Decimal("29.50")),
                CustomerPrice(customer_id=2, equipment_id=item["CYL9"].id, price=Decimal("21.00")),
                CustomerPrice(customer_id=2, service_id=fee["INSTALL"].id, price=Decimal("0.00")),
                CustomerPrice(customer_id=3, service_id=fee["DELIVERY"].id, price=Decimal("1.25")),
            ]
        )
        return {
            "ids": {code: e.id for code, e in item.items()},
            "catalog": {code: e.unit_price for code, e in item.items()} | {c: v.price for c, v in fee.items()},
        }

    known = demo.run(setup)
    ids, catalog = known["ids"], known["catalog"]
    own = {
        2: {"CYL12.7": Decimal("29.50"), "CYL9": Decimal("21.00"), "INSTALL": Decimal("0.00")},
        3: {"DELIVERY": Decimal("1.25")},
    }
    sales = [  # (customer, cylinders named by code or id, services)
        (2, ["CYL12.7"], ["INSTALL"]),  # everything read together
        (3, ["CYL9", ids["CYL12.7"]], ["DELIVERY", "INSTALL"]),  # CYL12.7 remembered by id
        (2, ["CYL9"], ["DELIVERY"]),  # every record remembered, customer 2's CYL9 price not yet read
        (3, [ids["CYL9"]], ["INSTALL"]),
        (2, [ids["CYL14"], "CYL12.7"], []),
    ]

    def batch(uow: Any) -> list[list[Decimal]]:
        call = Call(uow.session, DRIVER1, demo.settings)
        priced = []
        for customer, cylinders, services in sales:
            cmd = sale(
                customer=customer,
                deliveries=[{"equipment": c, "kind": "full_deliver", "qty": 2} for c in cylinders],
                services=[{"code": code, "qty": 1} for code in services],
                confirm=False,
            )
            record = create_transaction(call, cmd).record
            priced.append([line.unit_price for line in record.deliveries + record.services])
        return priced

    codes = {v: k for k, v in ids.items()}
    expected = [
        [own.get(customer, {}).get(codes.get(n, n), catalog[codes.get(n, n)]) for n in [*cylinders, *services]]
        for customer, cylinders, services in sales
    ]
    assert demo.run(batch) == expected
    assert expected[0] == [Decimal("29.50"), Decimal("0.00")] and expected[2][0] == Decimal("21.00")


def test_gst_and_line_amounts_round_half_up_at_the_half_cent(demo: Database) -> None:
    def overrides(uow: Any) -> None:
        uow.session.add(CustomerPrice(customer_id=1, service_id=3, price=Decimal("0.50")))
        uow.session.add(CustomerPrice(customer_id=5, service_id=3, price=Decimal("38.50")))

    demo.run(overrides)
    small = sell(demo, services=[{"code": "DELIVERY"}]).record
    assert (small.subtotal, small.gst, small.total) == (Decimal("0.50"), Decimal("0.05"), Decimal("0.55"))  # 0.045
    larger = sell(demo, customer=5, services=[{"code": "DELIVERY"}]).record
    assert larger.gst == Decimal("3.47")  # 38.50 x 0.09 = 3.465: half up, not half even (3.46)
    # a usage line at a half cent: 0.05 x 3.1000 = 0.155 -> 0.16
    sell(demo, customer=2, meter="0.00")
    usage = sell(demo, customer=2, meter="0.05").record
    assert (usage.usage_amount, usage.gst) == (Decimal("0.16"), Decimal("0.01"))  # 0.0144


def test_a_mixed_transaction_gives_the_hand_computed_invoice_to_the_cent(demo: Database) -> None:
    reading(demo, 1, "1000.00")
    outcome = sell(
        demo,
        meter="1532.40",
        deliveries=[full("CYL12.7", 2), empty("CYL9", 1), half("CYL14", 1, "4.25")],
        services=[{"code": "INSTALL", "qty": 1}, {"code": "DELIVERY", "qty": 1}],
    )
    trx, invoice = outcome.record, outcome.related["invoice"]
    assert trx.number.endswith("-000001") and trx.number.startswith("TRX-")
    assert invoice.number.endswith("-000001") and invoice.number.startswith("INV-")
    inv = invoice_of(demo, trx.id)
    assert [(line.kind, line.code, line.qty, line.unit_price, line.amount) for line in inv.lines] == [
        ("usage", "METER", Decimal("532.40"), Decimal("3.2000"), Decimal("1703.68")),  # 532.40 x 3.20
        ("delivery", "CYL12.7", Decimal("2"), Decimal("32.9000"), Decimal("65.80")),
        ("empty_return", "CYL9", Decimal("1"), Decimal("0"), Decimal("0.00")),
        ("half_return", "CYL14", Decimal("4.25"), Decimal("-2.6000"), Decimal("-11.05")),  # 4.25 x 2.60
        ("service", "INSTALL", Decimal("1"), Decimal("30.0000"), Decimal("30.00")),
        ("service", "DELIVERY", Decimal("1"), Decimal("5.0000"), Decimal("5.00")),
    ]
    # 1703.68 + 65.80 + 0 - 11.05 + 30.00 + 5.00 = 1793.43; GST 161.4087 -> 161.41; total 1954.84
    assert (inv.subtotal, inv.gst_rate, inv.gst, inv.total) == (
        Decimal("1793.43"),
        Decimal("0.0900"),
        Decimal("161.41"),
        Decimal("1954.84"),
    )
    assert (inv.status, inv.customer_name, inv.customer_address, inv.customer_email) == (
        "generated",
        "Ah Seng Eating House",
        "12 Jurong Port Rd, #01-05, Singapore 619094",
        "ahseng@example.sg",
    )
    assert (trx.subtotal, trx.gst, trx.total) == (inv.subtotal, inv.gst, inv.total)
    assert truck_stock(demo)["CYL12.7"] == (18, 0) and truck_stock(demo)["CYL9"] == (20, 1)
    assert truck_stock(demo)["CYL14"] == (20, 1)
    assert site_stock(demo) == {"CYL12.7": 2, "CYL9": -1, "CYL14": -1}


# -- other checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "record_id", "payload"),
    [
        (Truck, 2, {"truck": 2}),
        (Customer, 2, {"customer": 2}),
        (EquipmentModel, 3, {"deliveries": [full("CYL14", 1)]}),
        (Service, 1, {"services": [{"code": "INSTALL"}]}),
    ],
)
def test_inactive_records_cannot_be_used(demo: Database, table: Any, record_id: int, payload: dict) -> None:
    demo.run(lambda uow: uow.session.execute(update(table).where(table.id == record_id).values(active=False)))
    args = {"meter": "1.00", **payload}
    if "truck" in args:
        args["deliveries"] = [full("CYL9", 1)]
    before = traces(demo)
    with pytest.raises(InvalidState):
        sell(demo, **args)
    assert traces(demo) == before


def test_unknown_records_are_not_found(demo: Database) -> None:
    for args in ({"customer": 99}, {"truck": 99}, {"deliveries": [full("CYL99", 1)]}, {"services": [{"code": "X"}]}):
        with pytest.raises(NotFound):
            sell(demo, **{"meter": "1.00", **args})


@pytest.mark.parametrize("offset", [timedelta(hours=25), timedelta(days=-61)])
def test_occurred_at_outside_the_window_is_a_validation_error(demo: Database, offset: timedelta) -> None:
    with pytest.raises(ValidationError) as caught:
        sell(demo, meter="1.00", occurred_at=when(offset))
    assert caught.value.details["field"] == "occurred_at"
    sell(demo, meter="1.00", occurred_at=when(timedelta(hours=23)))
    sell(demo, meter="2.00", occurred_at=when(timedelta(days=-59)))


def test_an_empty_transaction_is_refused(demo: Database) -> None:
    with pytest.raises(ValidationError):
        sell(demo)


def test_in_one_unit_refused_changes_leave_nothing_beside_an_applied_one(demo: Database) -> None:
    """What the reconciler does: many changes in one transaction, refusals caught, no savepoints."""
    sell(demo, customer=2, meter="500.00")
    bad = [
        sale(customer=2, meter="400.00", deliveries=[full("CYL9", 1)]),  # meter_regression
        sale(deliveries=[full("CYL9", 1), full("CYL50", 21)], meter="3.00"),  # insufficient_stock
        sale(deliveries=[full("CYL9", 1)], services=[{"code": "NOPE"}]),  # not_found
    ]
    good = sale(customer=3, meter="9.00", deliveries=[full("CYL9", 2)])
    before = traces(demo)

    def batch(uow: Any) -> list[str]:
        codes = []
        for cmd in [*bad, good, *bad]:
            try:
                create_transaction(Call(uow.session, DRIVER1, demo.settings), cmd)
                codes.append("applied")
            except DomainError as exc:
                codes.append(exc.code)
        return codes

    assert demo.run(batch) == [
        "meter_regression",
        "insufficient_stock",
        "not_found",
        "applied",
        "meter_regression",
        "insufficient_stock",
        "not_found",
    ]
    after = traces(demo)
    assert after["transactions"] == before["transactions"] + 1
    assert after["invoices"] == before["invoices"] + 1
    assert after["meter_readings"] == before["meter_readings"] + 1
    assert after["audit_log"] == before["audit_log"] + 3  # transaction, invoice, meter reading
    year = next(k for k in after["counters"] if k.startswith("TRX-")).split("-")[1]
    assert after["counters"][f"TRX-{year}"] == before["counters"][f"TRX-{year}"] + 1
    assert after["counters"][f"INV-{year}"] == before["counters"][f"INV-{year}"] + 1
    assert truck_stock(demo)["CYL9"] == (18, 0) and truck_stock(demo)["CYL50"] == (20, 0)
    assert site_stock(demo, 1) == {} and site_stock(demo, 3) == {"CYL9": 2}


# -- ledger: audit and feed ----------------------------------------------------------------------------


def test_a_confirmed_sale_writes_one_audit_entry_per_record_and_feed_entries_for_everything(demo: Database) -> None:
    outcome = sell(demo, meter="12.00", deliveries=[full("CYL9", 2), empty("CYL50", 1)])
    trx = outcome.record
    entries = demo.read(
        lambda s: s.scalars(select(AuditEntry).where(AuditEntry.entity_type != "user").order_by(AuditEntry.id)).all()
    )
    mine = [(e.action, e.entity_type) for e in entries if e.user_id == 2]
    assert sorted(mine) == [("confirm", "transaction"), ("create", "invoice"), ("create", "meter_reading")]
    confirm = next(e for e in entries if e.entity_type == "transaction")
    context = orjson.loads(confirm.context)
    assert context["created"] is True
    assert sorted(context["stock"], key=lambda m: (m["place"], m["equipment"])) == [
        {"place": "site", "customer": 1, "equipment": "CYL50", "on_site": -1},
        {"place": "site", "customer": 1, "equipment": "CYL9", "on_site": 2},
        {"place": "truck", "truck": 1, "equipment": "CYL50", "empty": 1},
        {"place": "truck", "truck": 1, "equipment": "CYL9", "full": -2},
    ]
    feed = demo.read(lambda s: s.scalars(select(FeedEntry).where(FeedEntry.seq > 0)).all())
    by_entity: dict[str, list[FeedEntry]] = {}
    for row in feed:
        by_entity.setdefault(row.entity, []).append(row)
    assert [(f.entity_id, f.scope) for f in by_entity["transaction"]] == [(trx.id, 2)]
    assert [(f.scope) for f in by_entity["invoice"]] == [2]
    assert [(f.scope) for f in by_entity["meter_reading"]] == [2]
    assert len([f for f in by_entity["site_stock"] if f.scope == 0]) == 2
    doc = orjson.loads(by_entity["transaction"][0].doc)
    assert doc == demo.read(lambda s: transaction_doc(s, s.get(Transaction, trx.id)))
    assert doc["invoice"] == {
        "id": outcome.related["invoice"].id,
        "number": outcome.related["invoice"].number,
        "status": "generated",
    }


def test_an_admin_may_sell_and_owns_the_record(demo: Database) -> None:
    outcome = sell(demo, ADMIN, deliveries=[full("CYL9", 1)])
    assert outcome.record.driver_id == 1
    assert count(demo, Invoice, Invoice.driver_id == 1) == 1


# -- REST ----------------------------------------------------------------------------------------------


def test_rest_create_with_confirm_answers_the_detail_with_warnings(client: Any, driver_headers: dict) -> None:
    body = sale_payload(meter="10.00", deliveries=[full("CYL9", 1), empty("CYL14", 1)], services=[{"code": "INSTALL"}])
    r = client.post("/api/v1/transactions/", json=body, headers=driver_headers)
    assert r.status_code == 201, r.text
    created = r.json()
    warnings = created.pop("warnings")
    assert [w["code"] for w in warnings] == ["negative_site_inventory"]
    assert created["status"] == "confirmed" and created["total"] == "59.41"  # (24.50 + 30.00) x 1.09
    assert created["invoice"]["status"] == "generated"
    detail = client.get(f"/api/v1/transactions/{created['id']}/", headers=driver_headers).json()
    assert detail == created
    assert all(isinstance(v, str) for v in (detail["subtotal"], detail["gst"], detail["total"]))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"total": "1.00"}, "total"),
        ({"price": "1.00"}, "price"),
        ({"driver": 3}, "driver"),
        ({"number": "TRX-2026-000001"}, "number"),
        ({"meter": {"reading": "5.00", "rate": "1.0000"}}, "meter.rate"),
        ({"deliveries": [{**full("CYL9", 1), "unit_price": "1.00"}]}, "deliveries[0].unit_price"),
        ({"deliveries": [{**full("CYL9", 1), "amount": "1.00"}]}, "deliveries[0].amount"),
        ({"services": [{"code": "INSTALL", "price": "0.00"}]}, "services[0].price"),
    ],
)
def test_a_client_sending_a_price_or_amount_is_refused(
    demo: Database, client: Any, driver_headers: dict, change: dict, field: str
) -> None:
    before = traces(demo)
    r = client.post("/api/v1/transactions/", json={**sale_payload(meter="1.00"), **change}, headers=driver_headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "read_only_field"
    assert r.json()["error"]["details"]["field"] == field
    assert traces(demo) == before


@pytest.mark.parametrize(
    "change",
    [
        {"meter": {"reading": 12.5}},
        {"meter": {"reading": "-1.00"}},
        {"deliveries": [{"equipment": "CYL9", "kind": "half_return", "qty": 1}]},
        {"deliveries": [{**full("CYL9", 1), "remaining_kg": "1.00"}]},
        {"deliveries": [full("CYL9", 0)]},
        {"deliveries": [{"equipment": "CYL9", "kind": "sold", "qty": 1}]},
        {"occurred_at": "2026-11-24T02:10:00"},
        {"colour": "red"},
        {"customer": "1"},
    ],
)
def test_malformed_sales_are_validation_errors(client: Any, driver_headers: dict, change: dict) -> None:
    r = client.post("/api/v1/transactions/", json={**sale_payload(), **change}, headers=driver_headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "validation_error"


def test_meter_regression_and_insufficient_stock_over_rest(client: Any, driver_headers: dict) -> None:
    assert (
        client.post("/api/v1/transactions/", json=sale_payload(meter="9.00"), headers=driver_headers).status_code == 201
    )
    r = client.post("/api/v1/transactions/", json=sale_payload(meter="8.00"), headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "meter_regression")
    assert r.json()["error"]["details"]["last"] == "9.00"
    r = client.post("/api/v1/transactions/", json=sale_payload(deliveries=[full("CYL50", 21)]), headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "insufficient_stock")


def test_transaction_list_filters_and_ownership(
    client: Any, driver_headers: dict, other_driver_headers: dict, admin_headers: dict
) -> None:
    post = client.post
    post("/api/v1/transactions/", json=sale_payload(customer=1, meter="1.00"), headers=driver_headers)
    post(
        "/api/v1/transactions/",
        json=sale_payload(customer=2, truck=2, meter="1.00", confirm=False),
        headers=driver_headers,
    )
    old = when(timedelta(days=-10))
    post("/api/v1/transactions/", json=sale_payload(customer=3, meter="1.00", occurred_at=old), headers=driver_headers)
    theirs = post("/api/v1/transactions/", json=sale_payload(customer=4, meter="1.00"), headers=other_driver_headers)

    def ids(headers: dict, **params: Any) -> list[int]:
        r = client.get("/api/v1/transactions/", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return sorted(t["customer"] for t in r.json()["results"])

    assert ids(driver_headers) == [1, 2, 3]
    assert ids(other_driver_headers) == [4]
    assert ids(admin_headers) == [1, 2, 3, 4]
    assert ids(admin_headers, driver=3) == [4]
    assert ids(driver_headers, driver=3) == []
    assert ids(driver_headers, status="draft") == [2]
    assert ids(driver_headers, truck=2) == [2]
    assert ids(driver_headers, customer=3) == [3]
    today, old_day = sg_date(when()), sg_date(old)
    assert ids(driver_headers, date_from=today) == [1, 2]
    assert ids(driver_headers, date_to=old_day, date_from=old_day) == [3]
    assert ids(driver_headers, date_to=old_day) == [3]
    assert client.get("/api/v1/transactions/", params={"status": "x"}, headers=driver_headers).status_code == 400
    other_id = theirs.json()["id"]
    r = client.get(f"/api/v1/transactions/{other_id}/", headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    assert client.get(f"/api/v1/transactions/{other_id}/", headers=admin_headers).status_code == 200
    r = client.post(f"/api/v1/transactions/{other_id}/cancel/", headers=driver_headers)
    assert r.status_code == 404


def test_meter_readings_over_rest(
    client: Any, driver_headers: dict, other_driver_headers: dict, admin_headers: dict
) -> None:
    r = client.post(
        "/api/v1/meter-readings/",
        json={"customer": 5, "reading": "70.10", "occurred_at": when()},
        headers=driver_headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["reading"], created["previous_reading"], created["usage"], created["transaction"]) == (
        "70.10",
        None,
        "0.00",
        None,
    )
    assert client.get(f"/api/v1/meter-readings/{created['id']}/", headers=driver_headers).json() == created
    feed = demo_feed_doc(client, "meter_reading", created["id"])
    assert feed == created
    assert client.get(f"/api/v1/meter-readings/{created['id']}/", headers=other_driver_headers).status_code == 404
    r = client.post(
        "/api/v1/meter-readings/",
        json={"customer": 5, "reading": "70.00", "occurred_at": when()},
        headers=other_driver_headers,
    )
    assert (r.status_code, r.json()["error"]["details"]) == (
        409,
        {"last": "70.10", "current": "70.00", "customer": 5, "meter": 5},
    )
    r = client.post(
        "/api/v1/meter-readings/",
        json={"customer": 5, "reading": "71.00", "occurred_at": when(), "usage": "1.00"},
        headers=driver_headers,
    )
    assert r.json()["error"]["code"] == "read_only_field"
    assert client.get("/api/v1/meter-readings/", headers=driver_headers).json()["count"] == 1
    assert client.get("/api/v1/meter-readings/", headers=other_driver_headers).json()["count"] == 0
    assert client.get("/api/v1/meter-readings/", params={"customer": 4}, headers=admin_headers).json()["count"] == 0


def test_more_gas_than_the_cylinders_hold_and_amounts_beyond_the_columns_are_refused(demo: Database) -> None:
    with pytest.raises(ValidationError) as caught:
        sell(demo, deliveries=[half("CYL9", 2, "18.01")])
    assert caught.value.details["field"] == "remaining_kg"
    assert sell(demo, deliveries=[half("CYL9", 2, "18.00")]).record.deliveries[0].amount == Decimal("-46.80")
    sell(demo, meter="0.00")
    with pytest.raises(ValidationError):
        sell(demo, meter="999999999999.99")
    demo.run(lambda uow: uow.session.execute(update(Service).where(Service.id == 2).values(price=Decimal("20000.00"))))
    with pytest.raises(ValidationError):
        sell(demo, services=[{"code": "DEPOSIT", "qty": 1_000_000}])  # 20,000,000,000.00


def test_a_reading_republishes_the_customer_whose_doc_shows_the_last_reading(
    demo: Database, client: Any, driver_headers: dict
) -> None:
    before = client.get("/api/v1/customers/2/", headers=driver_headers).json()
    sell(demo, customer=2, meter="41.00")
    reading(demo, 2, "42.50")
    detail = client.get("/api/v1/customers/2/", headers=driver_headers).json()
    assert detail["meters"][0]["last_reading"] == "42.50" and detail["version"] == before["version"] + 2
    assert demo_feed_doc(client, "customer", 2) == detail
