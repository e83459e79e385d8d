"""The transaction life cycle: draft -> confirmed or cancelled; updates of drafts, last write wins."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from domain.audit.models import AuditEntry
from domain.catalog.models import EquipmentModel
from domain.db import Database
from domain.errors import InsufficientStock, InvalidState, MeterRegression, NotFound, ValidationError
from domain.sales.schemas import TransactionUpdate
from domain.sales.services import cancel_transaction, confirm_transaction, update_transaction
from domain.wire import parse
from tests.support.sales_support import (
    ADMIN,
    DRIVER1,
    DRIVER2,
    full,
    run,
    sale_payload,
    sell,
    site_stock,
    traces,
    truck_stock,
)


def patch(db: Database, trx_id: int, actor: Any = DRIVER1, **fields: Any) -> Any:
    cmd = parse(TransactionUpdate, {"id": trx_id, **fields})
    return run(db, lambda call: update_transaction(call, cmd), actor)


def confirm(db: Database, trx_id: int, actor: Any = DRIVER1) -> Any:
    return run(db, lambda call: confirm_transaction(call, trx_id), actor)


def cancel(db: Database, trx_id: int, actor: Any = DRIVER1) -> Any:
    return run(db, lambda call: cancel_transaction(call, trx_id), actor)


def test_a_draft_moves_nothing_and_has_no_number_until_confirmed(demo: Database) -> None:
    before = traces(demo)
    draft = sell(demo, confirm=False, meter="10.00", deliveries=[full("CYL9", 2)]).record
    assert (draft.status, draft.number, draft.total) == ("draft", None, Decimal("53.41"))  # preview: 49.00 x 1.09
    after = traces(demo)
    numbers = [{k: v for k, v in t["counters"].items() if k not in ("audit", "feed")} for t in (before, after)]
    assert after["stock"] == before["stock"] and numbers[0] == numbers[1] == {}
    assert (after["invoices"], after["meter_readings"]) == (before["invoices"], before["meter_readings"])
    outcome = confirm(demo, draft.id)
    trx = outcome.record
    assert (trx.status, trx.version) == ("confirmed", 2)
    assert trx.number.startswith("TRX-") and outcome.related["invoice"].number.startswith("INV-")
    assert truck_stock(demo)["CYL9"] == (18, 0) and site_stock(demo) == {"CYL9": 2}


def test_confirm_prices_at_the_time_of_confirm(demo: Database) -> None:
    draft = sell(demo, confirm=False, deliveries=[full("CYL9", 1)]).record
    assert draft.deliveries[0].amount == Decimal("24.50")
    demo.run(
        lambda uow: uow.session.execute(
            update(EquipmentModel).where(EquipmentModel.id == 1).values(unit_price=Decimal("26.00"))
        )
    )
    assert confirm(demo, draft.id).record.deliveries[0].amount == Decimal("26.00")


def test_confirm_checks_stock_and_meter_again_and_refuses_without_writing(demo: Database) -> None:
    draft = sell(demo, confirm=False, meter="5.00", deliveries=[full("CYL9", 15)]).record
    sell(demo, deliveries=[full("CYL9", 10)])
    before = traces(demo)
    with pytest.raises(InsufficientStock):
        confirm(demo, draft.id)
    assert traces(demo) == before
    sell(demo, meter="6.00")
    patch(demo, draft.id, deliveries=[full("CYL9", 1)])
    before = traces(demo)
    with pytest.raises(MeterRegression):
        confirm(demo, draft.id)
    assert traces(demo) == before


def test_confirmed_and_cancelled_transactions_are_immutable(demo: Database) -> None:
    done = sell(demo, meter="1.00").record
    for action in (
        lambda: confirm(demo, done.id),
        lambda: cancel(demo, done.id),
        lambda: patch(demo, done.id, meter={"reading": "2.00"}),
    ):
        with pytest.raises(InvalidState):
            action()
    draft = sell(demo, confirm=False, meter="2.00").record
    cancelled = cancel(demo, draft.id).record
    assert (cancelled.status, cancelled.version, cancelled.number) == ("cancelled", 2, None)
    assert cancelled.cancelled_at is not None
    with pytest.raises(InvalidState):
        confirm(demo, draft.id)
    with pytest.raises(InvalidState):
        cancel(demo, draft.id)


def test_another_driver_cannot_touch_a_draft_but_an_admin_can(demo: Database) -> None:
    draft = sell(demo, confirm=False, meter="1.00").record
    for action in (confirm, cancel):
        with pytest.raises(NotFound):
            action(demo, draft.id, DRIVER2)
    with pytest.raises(NotFound):
        patch(demo, draft.id, DRIVER2, meter={"reading": "3.00"})
    trx = confirm(demo, draft.id, ADMIN).record
    assert (trx.driver_id, trx.status) == (2, "confirmed")  # still driver1's


def test_update_replaces_the_changed_fields_and_reprices(demo: Database) -> None:
    draft = sell(demo, confirm=False, meter="1.00", deliveries=[full("CYL9", 1)]).record
    changed = patch(
        demo, draft.id, base_version=1, customer=2, deliveries=[full("CYL50", 1)], services=[{"code": "INSTALL"}]
    ).record
    assert (changed.customer_id, changed.version, changed.meter_reading) == (2, 2, Decimal("1.00"))
    assert [(d.equipment_id, d.amount) for d in changed.deliveries] == [(4, Decimal("118.00"))]
    assert changed.subtotal == Decimal("148.00")
    cleared = patch(demo, draft.id, base_version=2, meter=None).record
    assert (cleared.meter_reading, cleared.usage_amount) == (None, None)
    with pytest.raises(ValidationError):
        patch(demo, draft.id, deliveries=[], services=[])  # nothing left to bill
    with pytest.raises(ValidationError):
        patch(demo, draft.id, customer=None)
    with pytest.raises(ValidationError):
        patch(demo, draft.id, base_version=9, truck=2)


def test_an_update_from_an_older_version_wins_and_reports_the_conflict(demo: Database) -> None:
    draft = sell(demo, confirm=False, deliveries=[full("CYL9", 1)]).record
    patch(demo, draft.id, base_version=1, deliveries=[full("CYL9", 2)])
    patch(demo, draft.id, base_version=2, deliveries=[full("CYL9", 3)])
    outcome = patch(demo, draft.id, base_version=1, deliveries=[full("CYL14", 1)])
    assert outcome.conflict == {"base_version": 1, "overwritten_version": 3, "policy": "last_write_wins"}
    assert outcome.record.version == 4
    entry = demo.read(
        lambda s: s.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == "transaction").order_by(AuditEntry.id.desc())
        ).first()
    )
    context = orjson.loads(entry.context)
    assert context["conflict"] == outcome.conflict
    assert context["before"]["deliveries"][0]["qty"] == 3 and context["before"]["version"] == 3
    assert context["after"]["deliveries"][0]["equipment"] == "CYL14"
    assert patch(demo, draft.id, base_version=4, deliveries=[full("CYL14", 2)]).conflict is None


def test_drafts_over_rest(client: Any, driver_headers: dict, other_driver_headers: dict) -> None:
    r = client.post("/api/v1/transactions/", json=sale_payload(meter="3.00", confirm=False), headers=driver_headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["invoice"] is None and r.json()["number"] is None
    r = client.patch(
        f"/api/v1/transactions/{tid}/",
        json={"base_version": 1, "services": [{"code": "DELIVERY"}]},
        headers=driver_headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["total"], "conflict" in r.json()) == (2, "5.45", False)
    r = client.patch(
        f"/api/v1/transactions/{tid}/",
        json={"base_version": 1, "services": [{"code": "INSTALL"}]},
        headers=driver_headers,
    )
    assert r.json()["conflict"] == {"base_version": 1, "overwritten_version": 2, "policy": "last_write_wins"}
    for body in ({"id": 5}, {"status": "confirmed"}, {"total": "1.00"}, {"version": 3}, {"number": "X"}):
        r = client.patch(f"/api/v1/transactions/{tid}/", json=body, headers=driver_headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "read_only_field"), body
    assert client.post(f"/api/v1/transactions/{tid}/confirm/", headers=other_driver_headers).status_code == 404
    r = client.post(f"/api/v1/transactions/{tid}/confirm/", headers=driver_headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["invoice"]["status"] == "generated"
    r = client.post(f"/api/v1/transactions/{tid}/confirm/", headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_state")
    r = client.patch(f"/api/v1/transactions/{tid}/", json={"services": []}, headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_state")
    r = client.post(f"/api/v1/transactions/{tid}/cancel/", headers=driver_headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_state")
    r = client.post(f"/api/v1/transactions/{tid}/cancel/", json={"why": "x"}, headers=driver_headers)
    assert r.status_code == 400
