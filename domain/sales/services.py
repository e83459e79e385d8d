"""Workflow B, the sales engine: the only code that writes transactions and meter readings.

- A transaction bills one customer for one visit: meter usage + cylinders + services, priced only from the
  catalog and the customer's record. Life cycle: draft -> confirmed (immutable) or cancelled (drafts only);
  tablets usually create it confirmed at once.
- Confirm is ONE database transaction: stock rows locked and moved, meter reading recorded, totals
  computed, TRX number then INV number, invoice `generated` with its lines and a snapshot of the customer
  and every price, one audit entry per business record (transaction, invoice, meter reading; the stock
  movements go into the transaction's entry), and change-feed entries for all of them and each stock row.
- Every check comes first (see `domain.sales.planning`): a refused change writes nothing.
- A customer without a meter who sends a reading gets a meter created on the spot (serial unknown, to be
  filled in by the office); that first reading is its baseline (usage 0).
- Drivers act on their own transactions (another driver's is `not_found`); admins on all.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Table, select

from domain.accounts.policy import ensure_visible
from domain.audit.services import audit
from domain.catalog import lookups
from domain.catalog.models import Customer, Meter
from domain.catalog.services import customer_view
from domain.errors import InvalidState, ValidationError
from domain.feed.models import PUBLIC_SCOPE
from domain.feed.services import number_for, record_change
from domain.invoicing import outbox
from domain.invoicing.services import issue_invoice
from domain.ledger import SharedDoc, Staged, row_ref, stage, write_late
from domain.logistics.docs import FEED_ENTITY, stock_doc
from domain.sales import planning
from domain.sales.docs import meter_reading_doc, transaction_doc
from domain.sales.models import DeliveryLine, MeterReading, ServiceLine, Transaction
from domain.sales.planning import DeliveryInput, Plan, ServiceInput
from domain.sales.pricing import usage_of
from domain.sales.schemas import MeterReadingCreate, TransactionCreate, TransactionUpdate
from domain.sales.timing import check_occurred_at
from domain.service import Call, Outcome

TRANSACTIONS: Table = Transaction.__table__  # type: ignore[assignment]
DELIVERY_LINES: Table = DeliveryLine.__table__  # type: ignore[assignment]
SERVICE_LINES: Table = ServiceLine.__table__  # type: ignore[assignment]
write_late(DELIVERY_LINES, SERVICE_LINES)  # a push writes a sale's lines with its locked writes
METER_READINGS: Table = MeterReading.__table__  # type: ignore[assignment]


def _deliveries_in(cmd_lines: Any) -> list[DeliveryInput]:
    return [DeliveryInput(d.equipment, d.kind, d.qty, d.remaining_kg) for d in cmd_lines]


def _services_in(cmd_lines: Any) -> list[ServiceInput]:
    return [ServiceInput(s.code, s.qty) for s in cmd_lines]


def _doc(call: Call, trx: Transaction) -> Any:
    return lambda: transaction_doc(call.session, trx)


# -- create ------------------------------------------------------------------------------------------


def create_transaction(call: Call, cmd: TransactionCreate) -> Outcome:
    """A draft, or (with `confirm`) a confirmed transaction with its invoice, in one unit."""
    check_occurred_at(call, cmd.occurred_at)
    reading = cmd.meter.reading if cmd.meter is not None else None
    plan = planning.plan_sale(
        call, cmd.customer, cmd.truck, reading, _deliveries_in(cmd.deliveries), _services_in(cmd.services),
        lock=cmd.confirm,
    )  # fmt: skip
    if cmd.confirm:
        planning.check_stock(call, plan)
        # -- every check passed: from here on, only writes --
        return _confirm(call, _staged_sale(call, cmd.occurred_at, plan), plan, before=None)
    # -- every check passed: from here on, only writes --
    session = call.session
    trx = Transaction(
        customer_id=plan.customer.id,
        truck_id=plan.truck.id,
        driver_id=call.actor.id,
        status="draft",
        occurred_at=cmd.occurred_at,
        created_at=call.now,
        device_id=call.device_id,
        last_modified=call.now,
    )
    _write_lines(trx, plan)
    session.add(trx)  # no flush: its id comes at the unit's one flush
    audit(
        session, call.actor.id, call.device_id, "create", "transaction", trx,
        after=_doc(call, trx), **call.audit_context(),
    )  # fmt: skip
    record_change(session, "transaction", trx, doc=_doc(call, trx), scope=trx.driver_id)
    return Outcome("transaction", trx)


def _staged_sale(call: Call, occurred_at: datetime, plan: Plan) -> Staged:
    """A sale confirmed as it is created (the tablets' usual case) is staged rather than built from ORM
    objects: the transaction and its lines are written with the batch's other sales by one multi-row
    INSERT per table (see `domain.ledger.Staged`). Its attributes read like a Transaction's."""
    session = call.session
    amounts, deliveries, services = _priced(plan)
    trx = stage(
        session,
        TRANSACTIONS,
        {
            "number": None,
            "driver_id": call.actor.id,
            "status": "draft",
            "occurred_at": occurred_at,
            "created_at": call.now,
            "confirmed_at": None,
            "cancelled_at": None,
            "device_id": call.device_id,
            "version": 1,
            "last_modified": call.now,
            **amounts,
        },
    )
    trx.deliveries = [stage(session, DELIVERY_LINES, {"transaction_id": trx, **d}) for d in deliveries]
    trx.services = [stage(session, SERVICE_LINES, {"transaction_id": trx, **s}) for s in services]
    return trx


def _write_lines(trx: Transaction, plan: Plan) -> None:
    """The lines and amounts as priced now (a draft's are a preview; a confirmed one's are final)."""
    amounts, deliveries, services = _priced(plan)
    for name, value in amounts.items():
        setattr(trx, name, value)
    trx.deliveries = [DeliveryLine(**d) for d in deliveries]
    trx.services = [ServiceLine(**s) for s in services]


Row = dict[str, Any]


def _priced(plan: Plan) -> tuple[Row, list[Row], list[Row]]:
    """A transaction's columns as `plan` prices them (who, meter usage, totals), and its lines' columns."""
    meter = plan.meter
    amounts = {
        "customer_id": plan.customer.id,
        "truck_id": plan.truck.id,
        "meter_reading": meter.reading if meter is not None else None,
        "usage": meter.line.qty if meter is not None else None,
        "usage_amount": meter.line.amount if meter is not None else None,
        "subtotal": plan.sums.subtotal,
        "gst": plan.sums.gst,
        "total": plan.sums.total,
    }
    deliveries = [
        {
            "equipment_id": d.equipment.id,
            "kind": d.kind,
            "qty": d.qty,
            "remaining_kg": d.remaining_kg,
            "unit_price": d.line.unit_price,
            "amount": d.line.amount,
        }
        for d in plan.deliveries
    ]
    services = [
        {"service_id": s.service.id, "qty": s.qty, "unit_price": s.line.unit_price, "amount": s.line.amount}
        for s in plan.services
    ]
    return amounts, deliveries, services


# -- confirm -----------------------------------------------------------------------------------------


def _locked_transaction(call: Call, transaction_id: int) -> Transaction:
    """The transaction, row-locked until the commit; another driver's is `not_found` like a missing one."""
    session = call.session
    session.flush()  # populate_existing must not overwrite this unit's unflushed changes
    trx = session.execute(
        select(Transaction)
        .where(Transaction.id == transaction_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if trx is None:
        raise planning.not_found("transaction", transaction_id)
    ensure_visible(call.actor, trx.driver_id, "transaction", transaction_id)
    return trx


def _require_draft(trx: Transaction, action: str) -> None:
    if trx.status != "draft":
        raise InvalidState(
            f"transaction {trx.id} is {trx.status}: only a draft can be {action}",
            {"entity": "transaction", "id": trx.id, "status": trx.status},
        )


def confirm_transaction(call: Call, transaction_id: int) -> Outcome:
    """Confirm a draft at today's prices: stock, meter reading, numbers, invoice, audit, feed."""
    trx = _locked_transaction(call, transaction_id)
    _require_draft(trx, "confirmed")
    plan = planning.plan_sale(
        call, trx.customer_id, trx.truck_id, trx.meter_reading,
        [DeliveryInput(d.equipment_id, d.kind, d.qty, d.remaining_kg) for d in trx.deliveries],
        [ServiceInput(s.service_id, s.qty) for s in trx.services],
        lock=True,
    )  # fmt: skip
    planning.check_stock(call, plan)
    # -- every check passed: from here on, only writes --
    before = transaction_doc(call.session, trx)
    trx.touch(call.now)
    _write_lines(trx, plan)
    return _confirm(call, trx, plan, before=before)


def _confirm(call: Call, trx: Transaction | Staged, plan: Plan, before: dict[str, Any] | None) -> Outcome:
    session = call.session
    trx.status = "confirmed"
    trx.confirmed_at = call.now
    trx.number = number_for(session, "TRX", call.now, call.settings.timezone, TRANSACTIONS.c.number)  # TRX, then INV
    movements = _move_stock(call, plan)
    if plan.meter is not None:
        _record_reading(call, plan, trx)
    invoice = issue_invoice(call, trx, plan.customer, plan.lines, plan.sums)
    outbox.enqueue(call, invoice)  # LPG_AUTO_EMAIL: its e-mail, committed with the confirm or not at all
    doc = SharedDoc(trx, lambda: transaction_doc(session, trx, invoice))  # type: ignore[arg-type]
    audit(
        session, call.actor.id, call.device_id, "confirm", "transaction", trx,
        before=before, after=doc, created=before is None, stock=movements, invoice=invoice.number,
        **call.audit_context(),
    )  # fmt: skip
    record_change(session, "transaction", trx, doc=doc, scope=trx.driver_id)
    return Outcome("transaction", trx, warnings=list(plan.warnings), related={"invoice": invoice})


def _move_stock(call: Call, plan: Plan) -> list[dict[str, Any]]:
    """Apply the sale's movements to the rows `check_stock` locked; returns them for the audit entry."""
    session = call.session
    codes = {d.equipment.id: d.equipment.code for d in plan.deliveries}
    movements = []
    for key, delta in sorted(plan.deltas().items(), key=lambda kv: kv[0].sort_key()):
        row = plan.stock[key]
        for column, qty in delta.items():
            setattr(row, column, getattr(row, column) + qty)
        row.touch(call.now)
        code = codes[key.equipment]
        holder = "truck" if key.place == "truck" else "customer"
        movements.append({"place": key.place, holder: key.holder, "equipment": code, **delta})
        record_change(session, FEED_ENTITY[type(row)], row, doc=partial(stock_doc, row, code), scope=PUBLIC_SCOPE)
    return movements


def _record_reading(call: Call, plan: Plan, trx: Transaction | Staged) -> Staged:
    assert plan.meter is not None
    return _write_reading(
        call, plan.customer.id, plan.meter.meter, plan.meter.reading, trx.occurred_at, trx.driver_id, trx
    )


def _write_reading(
    call: Call,
    customer_id: int,
    meter: Meter | None,
    value: Decimal,
    occurred_at: Any,
    driver_id: int,
    trx: Transaction | Staged | None,
) -> Staged:
    """Record a reading and move the meter's last reading; a customer without a meter gets one now. The
    reading is a staged row (written with the batch's others); a new meter is flushed at once (rare), so
    the reading's row can name it.

    A sale's reading (`trx` given) counts from the last billed reading and becomes the new one; a reading
    without a sale counts from the last recorded one (its `usage` is informational, never billed) and moves
    the billing baseline only when it is the meter's very first reading."""
    session = call.session
    if meter is None:
        meter = Meter(customer_id=customer_id, serial=None, active=True, last_modified=call.now)
        session.add(meter)
        session.flush()
        planning.remember_meter(call, customer_id, meter)
    else:
        meter.touch(call.now)
    billed = trx is not None
    previous = planning.billing_baseline(meter) if billed else meter.last_reading
    reading = stage(
        session,
        METER_READINGS,
        {
            "meter_id": meter.id,
            "customer_id": customer_id,
            "reading": value,
            "previous_reading": previous,
            "usage": usage_of(value, previous),
            "occurred_at": occurred_at,
            "recorded_at": call.now,
            "driver_id": driver_id,
            "transaction_id": row_ref(trx) if trx is not None else None,
            "device_id": call.device_id,
            "version": 1,
            "last_modified": call.now,
        },
    )
    if billed or meter.last_reading is None:
        meter.last_billed_reading = value
    meter.last_reading, meter.last_reading_at = value, occurred_at
    _republish_customer(call, customer_id)
    doc = SharedDoc(reading, lambda: meter_reading_doc(reading))  # type: ignore[arg-type]
    audit(
        session, call.actor.id, call.device_id, "create", "meter_reading", reading,
        after=doc, transaction=(lambda: trx.id) if trx is not None else None, **call.audit_context(),
    )  # fmt: skip
    record_change(session, "meter_reading", reading, doc=doc, scope=driver_id)
    return reading


def _republish_customer(call: Call, customer_id: int) -> None:
    """The customer's representation shows its meters' last readings (tablets do meter math offline from
    it), so a reading changes the customer's doc: new version and feed entry. Its row is already locked
    (`planning.customer_meter`). No audit entry of its own: the meter reading's entry records the change."""
    session = call.session
    customer = lookups.held(session, Customer, customer_id)
    assert customer is not None, "checked before acting"
    customer.touch(call.now)
    record_change(session, "customer", customer, doc=lambda: customer_view(session, customer), scope=PUBLIC_SCOPE)


# -- update and cancel -------------------------------------------------------------------------------


def update_transaction(call: Call, cmd: TransactionUpdate) -> Outcome:
    """Change a draft (last write wins: an older `base_version` is applied and reported as a conflict,
    and the overwritten state is kept in the audit entry's `before`)."""
    trx = _locked_transaction(call, cmd.id)
    _require_draft(trx, "changed")
    changed = cmd.changed()
    for name in ("customer", "truck", "occurred_at", "deliveries", "services"):
        if name in changed and getattr(cmd, name) is None:
            raise ValidationError(f"'{name}' may not be null", name)
    if cmd.base_version is not None and cmd.base_version > trx.version:
        raise ValidationError(
            f"base_version {cmd.base_version} is newer than the record's version {trx.version}", "base_version"
        )
    if cmd.occurred_at is not None:
        check_occurred_at(call, cmd.occurred_at)
    reading = trx.meter_reading  # `meter: null` clears it
    if "meter" in changed:
        reading = cmd.meter.reading if cmd.meter is not None else None
    deliveries = (
        _deliveries_in(cmd.deliveries)
        if cmd.deliveries is not None
        else [DeliveryInput(d.equipment_id, d.kind, d.qty, d.remaining_kg) for d in trx.deliveries]
    )
    services = (
        _services_in(cmd.services)
        if cmd.services is not None
        else [ServiceInput(s.service_id, s.qty) for s in trx.services]
    )
    plan = planning.plan_sale(
        call, cmd.customer or trx.customer_id, cmd.truck or trx.truck_id, reading, deliveries, services,
        lock=False, judge_meter="meter" in changed or "customer" in changed,
    )  # fmt: skip
    # -- every check passed: from here on, only writes --
    session = call.session
    before = transaction_doc(session, trx)
    conflict = None
    if cmd.base_version is not None and cmd.base_version < trx.version:
        conflict = {"base_version": cmd.base_version, "overwritten_version": trx.version, "policy": "last_write_wins"}
    if cmd.occurred_at is not None:
        trx.occurred_at = cmd.occurred_at
    _write_lines(trx, plan)
    trx.touch(call.now)
    session.flush()
    audit(
        session, call.actor.id, call.device_id, "update", "transaction", trx,
        before=before, after=_doc(call, trx), conflict=conflict, **call.audit_context(),
    )  # fmt: skip
    record_change(session, "transaction", trx, doc=_doc(call, trx), scope=trx.driver_id)
    return Outcome("transaction", trx, conflict=conflict)


def cancel_transaction(call: Call, transaction_id: int) -> Outcome:
    """Cancel a draft; a confirmed transaction is never cancelled (`invalid_state`)."""
    trx = _locked_transaction(call, transaction_id)
    _require_draft(trx, "cancelled")
    session = call.session
    before = transaction_doc(session, trx)
    trx.status = "cancelled"
    trx.cancelled_at = call.now
    trx.touch(call.now)
    audit(
        session, call.actor.id, call.device_id, "cancel", "transaction", trx,
        before=before, after=_doc(call, trx), **call.audit_context(),
    )  # fmt: skip
    record_change(session, "transaction", trx, doc=_doc(call, trx), scope=trx.driver_id)
    return Outcome("transaction", trx)


# -- a reading without a sale ------------------------------------------------------------------------


def record_meter_reading(call: Call, cmd: MeterReadingCreate) -> Outcome:
    """A reading taken without a sale (a new meter's baseline, an inspection). It is judged like any other
    (`meter_regression` against the last recorded reading) and becomes the meter's last recorded reading;
    it does not move the billing baseline (unless it is the meter's first reading), so the next sale bills
    the gas used since the last billed reading."""
    check_occurred_at(call, cmd.occurred_at)
    customer = lookups.customer(call.session, cmd.customer)
    meter = planning.customer_meter(call, customer.id, lock=True)
    planning.check_regression(customer.id, meter, cmd.reading)
    # -- every check passed: from here on, only writes --
    reading = _write_reading(call, customer.id, meter, cmd.reading, cmd.occurred_at, call.actor.id, None)
    return Outcome("meter_reading", reading)
