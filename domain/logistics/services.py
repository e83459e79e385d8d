"""Workflow A (distributions between a depot and a truck) and admin stock adjustments: the only code that
moves or creates cylinders outside sales.

Rules (domain spec, "Where cylinders are" and "Workflow A"):
- `collection`: depot.full -= qty, truck.full += qty; `empty_return`: truck.empty -= qty, depot.empty += qty.
- A distribution is `pending` (editable, cancellable by its driver or an admin) until confirmed, then
  immutable (`invalid_state`); a driver acts on their own distributions only (another's is `not_found`).
- Confirm is one transaction: the distribution row and then every stock row it moves are locked (stock rows
  in one call, in sorted order), every depot and truck quantity is checked (`insufficient_stock` refuses the
  whole confirm), and only then are the number allocated, the stock moved, the audit entry and the feed
  entries recorded.
- Stock adjustments (admin, with a reason) are the only way cylinders appear or disappear; a depot or truck
  may not go below zero, a customer site may (as with sales).

Check-then-act: every refusal is raised before the first mutation, so a refused change leaves its
transaction as it found it (the sync reconciler applies a batch in one transaction). The one write that can
precede a refusal is `lock_stock_rows` inserting a missing stock row at zero, which is the same stock as no
row at all.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from domain.accounts.policy import ensure_visible, require_admin
from domain.audit.services import audit
from domain.catalog import lookups
from domain.catalog.models import EquipmentModel
from domain.catalog.services import last_write_wins
from domain.errors import InvalidState, NotFound, ValidationError
from domain.feed.services import number_for, record_change
from domain.logistics.docs import FEED_ENTITY, adjustment_doc, distribution_doc, stock_doc
from domain.logistics.models import Distribution, DistributionItem, StockAdjustment
from domain.logistics.movements import Move, apply_moves, plan_moves
from domain.logistics.schemas import DistributionCreate, DistributionItemIn, DistributionUpdate, StockAdjustmentCreate
from domain.logistics.stock import StockKey
from domain.service import Call, Outcome

DISTRIBUTIONS: Table = Distribution.__table__  # type: ignore[assignment]

Line = tuple[EquipmentModel, str, int]  # equipment, movement type, qty


# -- what a distribution moves ------------------------------------------------------------------------------


def movements(depot_id: int, truck_id: int, lines: list[Line]) -> dict[tuple[StockKey, str], int]:
    """The net change of every stock quantity a distribution touches."""
    deltas: dict[tuple[StockKey, str], int] = defaultdict(int)
    for equipment, movement, qty in lines:
        depot, truck = StockKey("depot", depot_id, equipment.id), StockKey("truck", truck_id, equipment.id)
        if movement == "collection":
            deltas[(depot, "full")] -= qty
            deltas[(truck, "full")] += qty
        else:
            deltas[(truck, "empty")] -= qty
            deltas[(depot, "empty")] += qty
    return deltas


# -- distributions ------------------------------------------------------------------------------------------


def _lines(session: Session, items: list[DistributionItemIn]) -> list[Line]:
    """Items as the catalog knows them: unknown equipment is `not_found`, inactive `invalid_state`."""
    return [(lookups.equipment(session, i.equipment), i.movement_type, i.qty) for i in items]


def _stored_lines(session: Session, d: Distribution) -> list[Line]:
    return [(lookups.equipment(session, i.equipment_id), i.movement_type, i.qty) for i in d.items]


def _check_occurred_at(call: Call, value: datetime | None) -> None:
    """A device's time of the visit: at most 24 hours ahead of the server, within the configured window."""
    if value is None:
        return
    if value > call.now + timedelta(hours=24):
        raise ValidationError("'occurred_at' lies more than 24 hours in the future", "occurred_at")
    if value < call.now - timedelta(days=call.settings.occurred_at_window_days):
        raise ValidationError(
            f"'occurred_at' is older than {call.settings.occurred_at_window_days} days", "occurred_at"
        )


def _locked_distribution(call: Call, distribution_id: int) -> Distribution:
    """The distribution, locked until commit, or `not_found` (also for another driver's)."""
    session = call.session
    session.flush()  # an earlier change in this transaction must not be lost by the fresh read
    d = session.execute(
        select(Distribution)
        .where(Distribution.id == distribution_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if d is None:
        raise NotFound(f"distribution {distribution_id} not found", {"entity": "distribution", "id": distribution_id})
    ensure_visible(call.actor, d.driver_id, "distribution", distribution_id)
    return d


def _require_pending(d: Distribution, action: str) -> None:
    if d.status != "pending":
        raise InvalidState(
            f"distribution {d.id} is {d.status}: only a pending distribution can be {action}",
            {"entity": "distribution", "id": d.id, "status": d.status},
        )


def _doc(session: Session, d: Distribution) -> dict[str, Any]:
    return distribution_doc(d, lookups.equipment_codes(session))


def _record(call: Call, d: Distribution) -> None:
    session = call.session
    record_change(session, "distribution", d, doc=lambda: _doc(session, d), scope=d.driver_id)


def _confirm(call: Call, d: Distribution, moves: list[Move], codes: dict[int, str]) -> None:
    """The acting half of a confirm: number, status, stock, audit (all checks are done)."""
    d.number = number_for(call.session, "DIST", call.now, call.settings.timezone, DISTRIBUTIONS.c.number)
    d.status = "confirmed"
    d.confirmed_at = call.now
    stock = apply_moves(call, moves, codes)
    audit(
        call.session, call.actor.id, call.device_id, "confirm", "distribution", d,
        before={"status": "pending"}, after=lambda: _doc(call.session, d), stock=stock,
        **call.audit_context(),
    )  # fmt: skip


def create_distribution(call: Call, cmd: DistributionCreate) -> Outcome:
    """A pending draft owned by the caller; with `confirm`, created and confirmed in one unit."""
    session = call.session
    depot = lookups.depot(session, cmd.depot)
    truck = lookups.truck(session, cmd.truck)
    lines = _lines(session, list(cmd.items))
    _check_occurred_at(call, cmd.occurred_at)
    codes = lookups.equipment_codes(session)
    moves = plan_moves(session, movements(depot.id, truck.id, lines), codes) if cmd.confirm else None
    # -- act
    d = Distribution(
        depot_id=depot.id,
        truck_id=truck.id,
        driver_id=call.actor.id,
        status="pending",
        occurred_at=cmd.occurred_at,
        created_at=call.now,
        device_id=call.device_id,
        version=1,
        last_modified=call.now,
        items=[DistributionItem(equipment_id=e.id, movement_type=m, qty=q) for e, m, q in lines],
    )
    session.add(d)
    session.flush()
    audit(
        session, call.actor.id, call.device_id, "create", "distribution", d, after=_doc(session, d),
        **call.audit_context(),
    )  # fmt: skip
    if moves is not None:
        _confirm(call, d, moves, codes)
    _record(call, d)
    return Outcome("distribution", d)


def update_distribution(call: Call, cmd: DistributionUpdate) -> Outcome:
    """Change a pending distribution's items (replacing them all), depot or truck; last-write-wins."""
    session = call.session
    d = _locked_distribution(call, cmd.id)
    _require_pending(d, "changed")
    conflict = last_write_wins(cmd.base_version, d.version)
    depot = lookups.depot(session, cmd.depot) if cmd.depot is not None else None
    truck = lookups.truck(session, cmd.truck) if cmd.truck is not None else None
    lines = _lines(session, list(cmd.items)) if cmd.items is not None else None
    before = _doc(session, d)
    # -- act
    if depot is None and truck is None and lines is None:
        return Outcome("distribution", d)
    if depot is not None:
        d.depot_id = depot.id
    if truck is not None:
        d.truck_id = truck.id
    if lines is not None:
        d.items = [DistributionItem(equipment_id=e.id, movement_type=m, qty=q) for e, m, q in lines]
    d.touch(call.now)
    _record(call, d)
    audit(
        session, call.actor.id, call.device_id, "update", "distribution", d, before=before,
        after=lambda: _doc(session, d), **call.audit_context(),
    )  # fmt: skip
    return Outcome("distribution", d, conflict=conflict)


def confirm_distribution(call: Call, distribution_id: int) -> Outcome:
    """Move the cylinders and give the distribution its number, all or nothing; confirmed is final."""
    session = call.session
    d = _locked_distribution(call, distribution_id)
    _require_pending(d, "confirmed")
    depot = lookups.depot(session, d.depot_id)
    truck = lookups.truck(session, d.truck_id)
    lines = _stored_lines(session, d)
    codes = lookups.equipment_codes(session)
    moves = plan_moves(session, movements(depot.id, truck.id, lines), codes)
    # -- act
    d.touch(call.now)
    _confirm(call, d, moves, codes)
    _record(call, d)
    return Outcome("distribution", d)


def cancel_distribution(call: Call, distribution_id: int) -> Outcome:
    """A pending distribution is dropped; nothing moves. Confirmed or cancelled ones are `invalid_state`."""
    session = call.session
    d = _locked_distribution(call, distribution_id)
    _require_pending(d, "cancelled")
    # -- act
    d.status = "cancelled"
    d.cancelled_at = call.now
    d.touch(call.now)
    _record(call, d)
    audit(
        session, call.actor.id, call.device_id, "cancel", "distribution", d, before={"status": "pending"},
        after=lambda: _doc(session, d), **call.audit_context(),
    )  # fmt: skip
    return Outcome("distribution", d)


# -- stock adjustments ---------------------------------------------------------------------------------------


def adjust_stock(call: Call, cmd: StockAdjustmentCreate) -> Outcome:
    """An admin adds or removes cylinders at one place, with a reason; depots and trucks stay >= 0."""
    require_admin(call.actor, "stock adjustments")
    session = call.session
    equipment = lookups.equipment(session, cmd.equipment, for_use=False)
    holder = {"depot": lookups.depot, "truck": lookups.truck, "site": lookups.customer}[cmd.place]
    holder(session, cmd.holder, for_use=False)  # type: ignore[operator]
    key = StockKey(cmd.place, cmd.holder, equipment.id)
    deltas = (
        {(key, "on_site"): cmd.on_site_delta}
        if cmd.place == "site"
        else {(key, s): d for s, d in (("full", cmd.full_delta), ("empty", cmd.empty_delta)) if d}
    )
    codes = {equipment.id: equipment.code}
    moves = plan_moves(session, deltas, codes)
    # -- act
    adjustment = StockAdjustment(
        place=cmd.place,
        depot_id=cmd.depot,
        truck_id=cmd.truck,
        customer_id=cmd.customer,
        equipment_id=equipment.id,
        full_delta=cmd.full_delta,
        empty_delta=cmd.empty_delta,
        on_site_delta=cmd.on_site_delta,
        reason=cmd.reason,
        user_id=call.actor.id,
        created_at=call.now,
    )
    session.add(adjustment)
    apply_moves(call, moves, codes)
    row = moves[0].row
    audit(
        session, call.actor.id, call.device_id, "adjust", FEED_ENTITY[type(row)], row,
        before={m.state: m.before for m in moves},
        after=lambda: {"stock": stock_doc(row, equipment.code), "adjustment": adjustment_doc(adjustment, equipment.code)},
        reason=cmd.reason, **call.audit_context(),
    )  # fmt: skip
    session.flush()  # the outcome carries the adjustment's id
    return Outcome("stock_adjustment", adjustment, related={"stock": row})
