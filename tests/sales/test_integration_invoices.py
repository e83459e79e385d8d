"""The invoice: a snapshot that never changes, and its life cycle generated -> printed -> emailed -> paid."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from domain.catalog.models import Customer, CustomerPrice, EquipmentModel, Service
from domain.clock import parse_rfc3339
from domain.db import Database
from domain.errors import NotFound, ReadOnlyField, ValidationError
from domain.feed.models import FeedEntry
from domain.invoicing.docs import invoice_doc
from domain.invoicing.models import Invoice, InvoiceEvent
from domain.invoicing.schemas import InvoicePayment, InvoiceStep
from domain.invoicing.services import invoice_id_for_transaction, invoice_id_of, mark_emailed, mark_paid, mark_printed
from domain.sales.docs import transaction_doc
from domain.sales.models import Transaction
from domain.wire import parse
from tests.support.sales_support import ADMIN, DRIVER2, full, half, run, sale_payload, sell, when


def sold(db: Database, **kwargs: Any) -> tuple[int, int]:
    """A confirmed sale of 2 x CYL12.7 + INSTALL to customer 1: total (65.80 + 30.00) x 1.09 = 104.42."""
    kwargs.setdefault("deliveries", [full("CYL12.7", 2)])
    kwargs.setdefault("services", [{"code": "INSTALL"}])
    outcome = sell(db, **kwargs)
    return outcome.id, outcome.related["invoice"].id


def doc(db: Database, invoice_id: int) -> dict[str, Any]:
    return db.read(lambda s: invoice_doc(s, s.get(Invoice, invoice_id)))


def pay(db: Database, invoice_id: int, amount: str, method: str = "cash", actor: Any = None, **kw: Any) -> Any:
    args = (invoice_id, Decimal(amount), method)
    if actor is None:
        return run(db, lambda call: mark_paid(call, *args, **kw))
    return run(db, lambda call: mark_paid(call, *args, **kw), actor)


def test_the_life_cycle_moves_forward_and_records_every_repeat(demo: Database) -> None:
    _, inv = sold(demo)
    assert doc(demo, inv)["status"] == "generated"
    printed = run(demo, lambda call: mark_printed(call, inv, parse_rfc3339(when(timedelta(minutes=-5)))))
    assert (printed.record.status, printed.record.printed_by, printed.record.version) == ("printed", 2, 2)
    first_print = printed.record.printed_at
    run(demo, lambda call: mark_printed(call, inv), ADMIN)
    after = doc(demo, inv)
    assert after["status"] == "printed" and after["printed_at"] is not None
    assert parse_rfc3339(after["printed_at"]) == first_print and after["printed_by"] == 2
    emailed = run(demo, lambda call: mark_emailed(call, inv, occurred_at=None))
    assert emailed.record.status == "emailed"
    pay(demo, inv, "104.42", "paynow", reference="PN-1")
    run(demo, lambda call: mark_printed(call, inv))
    run(demo, lambda call: mark_emailed(call, inv))
    final = doc(demo, inv)
    assert final["status"] == "paid"  # never backwards
    assert [(e["kind"], e["actor"], e["detail"]) for e in final["events"]] == [
        ("printed", 2, None),
        ("printed", 1, "repeat"),
        ("emailed", 2, None),
        ("payment", 2, "104.42 paynow"),
        ("printed", 2, "repeat"),
        ("emailed", 2, "repeat"),
    ]
    assert final["events"][0]["occurred_at"] is not None
    assert final["version"] == 7


def test_emailing_before_printing_skips_printed_and_printing_later_keeps_emailed(demo: Database) -> None:
    _, inv = sold(demo)
    run(demo, lambda call: mark_emailed(call, inv))
    run(demo, lambda call: mark_printed(call, inv))
    d = doc(demo, inv)
    assert d["status"] == "emailed" and d["printed_at"] is not None


def test_partial_payments_add_up_and_pay_the_invoice_when_they_reach_the_total(demo: Database) -> None:
    _, inv = sold(demo)
    first = pay(demo, inv, "50.00")
    assert (first.record.status, first.record.amount_paid, first.warnings) == ("generated", Decimal("50.00"), [])
    second = pay(demo, inv, "54.41", "cheque", reference="CHQ 001234")
    assert (second.record.status, second.record.paid_at) == ("generated", None)
    third = pay(demo, inv, "0.01", "bank_transfer")
    assert (third.record.status, third.record.amount_paid, third.warnings) == ("paid", Decimal("104.42"), [])
    d = doc(demo, inv)
    assert [(p["amount"], p["method"], p["reference"]) for p in d["payments"]] == [
        ("50.00", "cash", None),
        ("54.41", "cheque", "CHQ 001234"),
        ("0.01", "bank_transfer", None),
    ]
    assert (d["balance"], d["paid_by"]) == ("0.00", 2)


def test_an_over_payment_is_recorded_with_an_overpaid_warning_and_the_credit(demo: Database) -> None:
    _, inv = sold(demo)
    outcome = pay(demo, inv, "200.00")
    assert outcome.record.status == "paid"
    assert [w["code"] for w in outcome.warnings] == ["overpaid"]
    assert outcome.warnings[0]["details"]["credit"] == "95.58"
    again = pay(demo, inv, "1.00")  # recorded offline after it was paid: never refused for its amount
    assert again.warnings[0]["details"]["credit"] == "96.58"
    assert doc(demo, inv)["balance"] == "-96.58"


@pytest.mark.parametrize(
    ("amount", "method"),
    [
        (Decimal("0"), "cash"),
        (Decimal("-5.00"), "cash"),
        (Decimal("1.005"), "cash"),
        (Decimal("5.00"), "bitcoin"),
        (5.0, "cash"),
        (Decimal("10000000000.00"), "cash"),
    ],
)
def test_a_payment_needs_a_positive_amount_and_a_known_method(demo: Database, amount: Any, method: str) -> None:
    _, inv = sold(demo)
    with pytest.raises(ValidationError):
        run(demo, lambda call: mark_paid(call, inv, amount, method))
    assert doc(demo, inv)["payments"] == []


def test_drivers_mark_only_their_own_invoices(demo: Database) -> None:
    _, inv = sold(demo)
    for action in (
        lambda c: mark_printed(c, inv),
        lambda c: mark_emailed(c, inv),
        lambda c: mark_paid(c, inv, Decimal("1.00"), "cash"),
    ):
        with pytest.raises(NotFound):
            run(demo, action, DRIVER2)
    with pytest.raises(NotFound):
        run(demo, lambda c: mark_printed(c, 999))
    assert run(demo, lambda c: mark_printed(c, inv), ADMIN).record.status == "printed"


def test_the_invoice_of_a_transaction_is_found_for_tablets_that_printed_offline(demo: Database) -> None:
    trx, inv = sold(demo)
    assert demo.read(lambda s: invoice_id_for_transaction(s, trx)) == inv
    draft = sell(demo, confirm=False, meter="1.00").id
    for missing in (draft, 999):
        with pytest.raises(NotFound):
            demo.read(lambda s, m=missing: invoice_id_for_transaction(s, m))


def test_the_transaction_doc_follows_its_invoice_status_in_rest_and_feed(demo: Database) -> None:
    trx, inv = sold(demo)
    run(demo, lambda call: mark_printed(call, inv))
    t = demo.read(lambda s: transaction_doc(s, s.get(Transaction, trx)))
    assert t["invoice"]["status"] == "printed" and t["version"] == 2
    feed = demo.read(
        lambda s: {
            (f.entity, f.entity_id): f
            for f in s.scalars(select(FeedEntry).where(FeedEntry.entity.in_(("transaction", "invoice"))))
        }
    )
    assert orjson.loads(feed[("transaction", trx)].doc) == t
    assert orjson.loads(feed[("invoice", inv)].doc) == doc(demo, inv)
    assert feed[("invoice", inv)].seq > feed[("transaction", trx)].seq - 5
    before = feed[("transaction", trx)].seq
    run(demo, lambda call: mark_printed(call, inv))  # a repeat: the transaction's doc does not change
    after = demo.read(
        lambda s: s.scalars(
            select(FeedEntry).where(FeedEntry.entity == "transaction", FeedEntry.entity_id == trx)
        ).one()
    )
    assert after.seq == before


def test_issued_invoices_do_not_change_when_prices_or_the_customer_change(demo: Database) -> None:
    sell(demo, meter="100.00")
    _, inv = sold(
        demo,
        meter="150.00",
        deliveries=[full("CYL12.7", 2), half("CYL9", 1, "2.00")],
        services=[{"code": "INSTALL"}, {"code": "DELIVERY"}],
    )
    before = doc(demo, inv)

    def change_everything(uow: Any) -> None:
        s = uow.session
        s.execute(update(EquipmentModel).values(unit_price=Decimal("99.00")))
        s.execute(update(Service).values(price=Decimal("77.00")))
        s.execute(
            update(Customer)
            .where(Customer.id == 1)
            .values(
                name="Renamed",
                address="Elsewhere",
                email="new@example.sg",
                meter_rate=Decimal("9.9"),
                kg_rate=Decimal("8.8"),
            )
        )
        s.add(CustomerPrice(customer_id=1, equipment_id=2, price=Decimal("1.00")))

    demo.run(change_everything)
    assert doc(demo, inv) == before
    assert (before["customer_name"], before["subtotal"], before["total"]) == (
        "Ah Seng Eating House",
        "255.60",
        "278.60",
    )
    # 50.00 x 3.20 = 160.00; 65.80; -5.20; 30.00; 5.00 -> 255.60; GST 23.004 -> 23.00


def test_invoices_over_rest(
    demo: Database, client: Any, driver_headers: dict, other_driver_headers: dict, admin_headers: dict
) -> None:
    ids = []
    for customer in (1, 2, 3):
        r = client.post(
            "/api/v1/transactions/",
            json=sale_payload(customer=customer, deliveries=[full("CYL9", 1)]),
            headers=driver_headers,
        )
        ids.append(r.json()["invoice"]["id"])
    theirs = client.post(
        "/api/v1/transactions/",
        json=sale_payload(customer=4, deliveries=[full("CYL9", 1)]),
        headers=other_driver_headers,
    ).json()["invoice"]["id"]
    # 24.50 x 1.09 = 26.705 -> 26.71 (GST 2.205 -> 2.21)
    r = client.post(
        f"/api/v1/invoices/{ids[0]}/mark-paid/", json={"amount": "26.71", "method": "paynow"}, headers=driver_headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["warnings"], r.json()["total"]) == ("paid", [], "26.71")
    r = client.post(f"/api/v1/invoices/{ids[1]}/mark-printed/", headers=driver_headers)
    assert r.status_code == 200 and r.json()["status"] == "printed"
    r = client.post(f"/api/v1/invoices/{ids[2]}/mark-emailed/", json={"occurred_at": when()}, headers=driver_headers)
    assert r.status_code == 200 and r.json()["status"] == "emailed"
    r = client.post(
        f"/api/v1/invoices/{ids[2]}/mark-paid/", json={"amount": 26.71, "method": "cash"}, headers=driver_headers
    )
    assert r.json()["error"]["code"] == "validation_error"
    r = client.post(
        f"/api/v1/invoices/{ids[2]}/mark-paid/", json={"amount": "1.00", "method": "card"}, headers=driver_headers
    )
    assert r.json()["error"]["code"] == "validation_error"
    r = client.post(
        f"/api/v1/invoices/{ids[2]}/mark-paid/",
        json={"amount": "1.00", "method": "cash", "status": "paid"},
        headers=driver_headers,
    )
    assert r.json()["error"]["code"] == "read_only_field"

    def listed(headers: dict, **params: Any) -> list[int]:
        r = client.get("/api/v1/invoices/", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return sorted(i["id"] for i in r.json()["results"])

    assert listed(driver_headers) == ids
    assert listed(other_driver_headers) == [theirs]
    assert listed(admin_headers) == sorted([*ids, theirs])
    assert listed(driver_headers, unpaid="true") == ids[1:]
    assert listed(driver_headers, unpaid="false") == ids[:1]
    assert listed(driver_headers, status="printed") == [ids[1]]
    assert listed(admin_headers, customer=4) == [theirs]
    assert listed(driver_headers, date_to="2020-01-01") == []
    detail = client.get(f"/api/v1/invoices/{ids[0]}/", headers=driver_headers).json()
    assert detail == doc(demo, ids[0])
    assert detail["lines"][0]["amount"] == "24.50" and detail["payments"][0]["amount"] == "26.71"
    for path in (f"/api/v1/invoices/{theirs}/", f"/api/v1/invoices/{theirs}/mark-printed/"):
        method = client.get if path.endswith(f"{theirs}/") else client.post
        assert method(path, headers=driver_headers).status_code == 404
    events = demo.read(lambda s: s.scalars(select(InvoiceEvent)).all())
    assert len(events) == 3


def test_sync_invoice_commands_name_the_invoice_or_its_transaction(demo: Database) -> None:
    trx, inv = sold(demo)
    by_invoice = parse(InvoiceStep, {"invoice": inv, "occurred_at": when()})
    by_transaction = parse(InvoicePayment, {"transaction": trx, "amount": "5.00", "method": "cheque"})
    assert demo.read(lambda s: invoice_id_of(s, by_invoice)) == inv
    assert demo.read(lambda s: invoice_id_of(s, by_transaction)) == inv
    assert InvoicePayment.references == {"invoice": "invoice", "transaction": "transaction"}
    for bad in ({}, {"invoice": inv, "transaction": trx}):
        with pytest.raises(ValidationError):
            parse(InvoiceStep, bad)
    with pytest.raises(ReadOnlyField):
        parse(InvoicePayment, {"invoice": inv, "amount": "5.00", "method": "cash", "status": "paid"})


def test_edges_of_ids_and_dates_are_answered_not_failed(client: Any, driver_headers: dict) -> None:
    huge = 2**64
    for path in (f"/api/v1/transactions/{huge}/", f"/api/v1/invoices/{huge}/", f"/api/v1/meter-readings/{huge}/"):
        assert client.get(path, headers=driver_headers).status_code == 404
    assert client.post(f"/api/v1/invoices/{huge}/mark-printed/", headers=driver_headers).status_code == 404
    for params in ({"customer": huge}, {"driver": 0}):
        assert client.get("/api/v1/invoices/", params=params, headers=driver_headers).status_code == 400
    for params in ({"date_from": "0001-01-01"}, {"date_to": "9999-12-31"}):
        assert client.get("/api/v1/transactions/", params=params, headers=driver_headers).status_code == 200
        assert client.get("/api/v1/invoices/", params=params, headers=driver_headers).status_code == 200
    r = client.post("/api/v1/transactions/", json=sale_payload(deliveries=[full(2**63, 1)]), headers=driver_headers)
    assert r.json()["error"]["code"] == "validation_error"
    r = client.patch(
        "/api/v1/transactions/1/", content=b"null", headers={**driver_headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 400  # the edge refuses a body that is not an object
