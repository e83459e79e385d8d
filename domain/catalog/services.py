"""Changing the catalog. Reference data (equipment, depots, trucks, services) is the office's: admin only.
Customers may be created by any user and their contact fields edited by any user; rates, price overrides
and (de)activation are admin-only (`read_only_field` for a driver, nothing changes).

Every service checks everything that can be refused before it changes anything (the reconciler applies
many changes in one transaction and relies on a refused change having touched nothing). Every change
bumps the record's version, writes one audit entry and a change-feed entry (scope 0: everyone pulls the
catalog).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from domain.accounts.policy import refuse_admin_only_fields, require_admin
from domain.audit.services import audit
from domain.base import Versioned
from domain.catalog import lookups
from domain.catalog.docs import customer_doc, depot_doc, equipment_doc, service_doc, truck_doc
from domain.catalog.models import Customer, CustomerPrice, Depot, EquipmentModel, Meter, Service, Truck
from domain.catalog.schemas import (
    CUSTOMER_ADMIN_ONLY,
    CustomerCreate,
    CustomerUpdate,
    DepotCreate,
    DepotUpdate,
    EquipmentCreate,
    EquipmentUpdate,
    MeterCreate,
    MeterUpdate,
    PricesIn,
    ServiceCreate,
    ServiceUpdate,
    TruckCreate,
    TruckUpdate,
)
from domain.errors import Conflict, NotFound, ValidationError
from domain.feed.services import record_change
from domain.ledger import SharedDoc, Staged, stage
from domain.money import money_str
from domain.service import Call, Outcome

R = TypeVar("R", bound=Versioned)


# -- representations with their relations ------------------------------------------------------------


def customer_views(session: Session, customers: list[Customer]) -> list[dict[str, Any]]:
    """Customers' REST representations (and feed docs), with their meters and price overrides
    (`{"equipment": {"CYL12.7": "30.00"}, "services": {"INSTALL": "25.00"}}`), in three queries."""
    ids = [c.id for c in customers]
    meters: dict[int, list[Meter]] = {i: [] for i in ids}
    prices: dict[int, dict[str, dict[str, str]]] = {i: {"equipment": {}, "services": {}} for i in ids}
    if ids:
        for meter in session.scalars(select(Meter).where(Meter.customer_id.in_(ids)).order_by(Meter.id)):
            meters[meter.customer_id].append(meter)
        rows = session.execute(
            select(CustomerPrice.customer_id, CustomerPrice.price, EquipmentModel.code, Service.code)
            .outerjoin(EquipmentModel, EquipmentModel.id == CustomerPrice.equipment_id)
            .outerjoin(Service, Service.id == CustomerPrice.service_id)
            .where(CustomerPrice.customer_id.in_(ids))
            .order_by(CustomerPrice.id)
        ).all()
        for customer_id, price, equipment_code, service_code in rows:
            kind, code = ("equipment", equipment_code) if equipment_code is not None else ("services", service_code)
            prices[customer_id][kind][code] = money_str(price)  # type: ignore[assignment]
    return [customer_doc(c, meters[c.id], prices[c.id]) for c in customers]


def customer_view(session: Session, customer: Customer) -> dict[str, Any]:
    """One customer's REST representation (and feed doc)."""
    return customer_views(session, [customer])[0]


# -- shared steps ----------------------------------------------------------------------------------------


def _locked(session: Session, model: type[R], entity: str, record_id: int) -> R:
    """The record, locked for this transaction (`SELECT ... FOR UPDATE`), read fresh.

    Pending changes are flushed first: in a sync batch an earlier change of the same transaction may have
    touched the record, and reading it fresh must not discard that."""
    session.flush()
    found = session.execute(
        select(model).where(model.id == record_id).with_for_update().execution_options(populate_existing=True)  # type: ignore[attr-defined]
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"{entity} {record_id} not found", {"entity": entity, "id": record_id})
    return found


def _unique(session: Session, model: Any, column: str, value: object, entity: str, own_id: int | None = None) -> None:
    """Codes, plates and serials are unique: a clash is `conflict` naming the field (checked before acting)."""
    found = session.execute(select(model.id).where(getattr(model, column) == value)).scalar_one_or_none()
    if found is not None and found != own_id:
        raise Conflict(
            f"{entity} {column} {value!r} is already in use",
            {"field": column, "entity": entity, "id": found},
        )


CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]


def _created(call: Call, entity: str, row: Any, build: Callable[[], dict[str, Any]]) -> Outcome:
    if not isinstance(row, Staged):
        call.session.add(row)  # its id comes with the next flush (the REST handler's, or a sync batch's one)
    doc = SharedDoc(row, build)
    record_change(call.session, entity, row, doc=doc)
    audit(call.session, call.actor.id, call.device_id, "create", entity, row, after=doc, **call.audit_context())
    return Outcome(entity, row)


def _updated(
    call: Call,
    entity: str,
    row: Any,
    changes: dict[str, Any],
    doc: Callable[[], dict[str, Any]],
    before: dict[str, Any],
    *,
    changed: bool = False,
) -> Outcome:
    """Apply checked changes: one version step, one audit entry (before/after), one feed entry. Changes
    that leave every field as it is (and nothing else `changed`) write nothing: the answer is the record
    as it stands, with no new version, feed entry or audit entry."""
    changes = {name: value for name, value in changes.items() if getattr(row, name) != value}
    if not changes and not changed:
        return Outcome(entity, row)
    for name, value in changes.items():
        setattr(row, name, value)
    row.touch(call.now)
    record_change(call.session, entity, row, doc=doc)
    audit(
        call.session, call.actor.id, call.device_id, "update", entity, row, before=before, after=doc,
        **call.audit_context(),
    )  # fmt: skip
    return Outcome(entity, row)


# -- reference data (admin) -------------------------------------------------------------------------------


def create_equipment(call: Call, cmd: EquipmentCreate) -> Outcome:
    """A new cylinder model; its stock everywhere starts at zero (cylinders only arrive by adjustment)."""
    require_admin(call.actor, "catalog changes")
    _unique(call.session, EquipmentModel, "code", cmd.code, "equipment")
    row = EquipmentModel(**cmd.model_dump(), version=1, last_modified=call.now)
    return _created(call, "equipment", row, lambda: equipment_doc(row))


def update_equipment(call: Call, equipment_id: int, cmd: EquipmentUpdate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    row = _locked(call.session, EquipmentModel, "equipment", equipment_id)
    before = equipment_doc(row)
    return _updated(call, "equipment", row, cmd.changes(), lambda: equipment_doc(row), before)


def create_depot(call: Call, cmd: DepotCreate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    _unique(call.session, Depot, "code", cmd.code, "depot")
    row = Depot(**cmd.model_dump(), version=1, last_modified=call.now)
    return _created(call, "depot", row, lambda: depot_doc(row))


def update_depot(call: Call, depot_id: int, cmd: DepotUpdate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    row = _locked(call.session, Depot, "depot", depot_id)
    changes = cmd.changes()
    if "code" in changes:
        _unique(call.session, Depot, "code", changes["code"], "depot", row.id)
    before = depot_doc(row)
    return _updated(call, "depot", row, changes, lambda: depot_doc(row), before)


def create_truck(call: Call, cmd: TruckCreate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    _unique(call.session, Truck, "plate", cmd.plate, "truck")
    row = Truck(**cmd.model_dump(), version=1, last_modified=call.now)
    return _created(call, "truck", row, lambda: truck_doc(row))


def update_truck(call: Call, truck_id: int, cmd: TruckUpdate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    row = _locked(call.session, Truck, "truck", truck_id)
    changes = cmd.changes()
    if "plate" in changes:
        _unique(call.session, Truck, "plate", changes["plate"], "truck", row.id)
    before = truck_doc(row)
    return _updated(call, "truck", row, changes, lambda: truck_doc(row), before)


def create_service(call: Call, cmd: ServiceCreate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    _unique(call.session, Service, "code", cmd.code, "service")
    row = Service(**cmd.model_dump(), version=1, last_modified=call.now)
    return _created(call, "service", row, lambda: service_doc(row))


def update_service(call: Call, service_id: int, cmd: ServiceUpdate) -> Outcome:
    require_admin(call.actor, "catalog changes")
    row = _locked(call.session, Service, "service", service_id)
    before = service_doc(row)
    return _updated(call, "service", row, cmd.changes(), lambda: service_doc(row), before)


# -- customers --------------------------------------------------------------------------------------------

PriceChange = tuple[str, int, Decimal | None]  # ("equipment" | "service", item id, new price or None)


def _check_prices(session: Session, prices: PricesIn) -> list[PriceChange]:
    """Resolve price overrides by code (an unknown code is `not_found`) before anything changes."""
    planned: list[PriceChange] = []
    for code, price in sorted(prices.equipment.items()):
        planned.append(("equipment", lookups.equipment(session, code, for_use=False).id, price))
    for code, price in sorted(prices.services.items()):
        planned.append(("service", lookups.service(session, code, for_use=False).id, price))
    return planned


def _apply_prices(call: Call, customer: Customer, planned: list[PriceChange]) -> None:
    session = call.session
    lookups.forget_prices(session)
    for kind, item_id, price in planned:
        column = CustomerPrice.equipment_id if kind == "equipment" else CustomerPrice.service_id
        existing = session.execute(
            select(CustomerPrice).where(CustomerPrice.customer_id == customer.id, column == item_id)
        ).scalar_one_or_none()
        if price is None:
            if existing is not None:
                session.execute(delete(CustomerPrice).where(CustomerPrice.id == existing.id))
        elif existing is None:
            ids = {"equipment_id": item_id} if kind == "equipment" else {"service_id": item_id}
            session.add(CustomerPrice(customer_id=customer.id, price=price, last_modified=call.now, **ids))
        elif existing.price != price:
            existing.price = price
            existing.touch(call.now)


def create_customer(call: Call, cmd: CustomerCreate) -> Outcome:
    """`customer.create`: any user; the meter (if given) is created with it; rates and prices admin-only."""
    session = call.session
    refuse_admin_only_fields(call.actor, cmd.model_fields_set, CUSTOMER_ADMIN_ONLY)
    serial = cmd.meter.serial if cmd.meter is not None else None
    if serial is not None:
        _unique(session, Meter, "serial", serial, "meter")
    planned = _check_prices(session, cmd.prices) if cmd.prices is not None else []
    # -- act
    values = {
        "name": cmd.name,
        "address": cmd.address,
        "email": cmd.email,
        "phone": cmd.phone,
        "meter_rate": cmd.meter_rate if cmd.meter_rate is not None else Decimal("0"),
        "kg_rate": cmd.kg_rate,
        "active": True,
        "created_by": call.actor.id,
        "created_at": call.now,
        "version": 1,
        "last_modified": call.now,
    }
    if cmd.meter is None and not planned:
        # The usual tablet case: one row and nothing else, and a document that needs no query. The row is
        # staged, so a sync batch of new customers is one multi-row INSERT without ORM objects.
        staged = stage(session, CUSTOMERS, values)
        no_prices: dict[str, dict[str, str]] = {"equipment": {}, "services": {}}
        return _created(call, "customer", staged, lambda: customer_doc(staged, [], no_prices))  # type: ignore[arg-type]
    customer = Customer(**values)
    session.add(customer)
    session.flush()  # the meter and prices need the customer's id
    if cmd.meter is not None:
        session.add(Meter(customer_id=customer.id, serial=serial, version=1, last_modified=call.now))
    _apply_prices(call, customer, planned)
    return _created(call, "customer", customer, lambda: customer_view(session, customer))


def update_customer(call: Call, cmd: CustomerUpdate) -> Outcome:
    """`customer.update`: last-write-wins. An update edited from an older version is still applied; the
    outcome reports the conflict and the audit entry keeps the overwritten state in `before`."""
    session = call.session
    refuse_admin_only_fields(call.actor, cmd.model_fields_set, CUSTOMER_ADMIN_ONLY)
    customer = _locked(session, Customer, "customer", cmd.id)
    conflict = last_write_wins(cmd.base_version, customer.version)
    changes = cmd.changes()
    prices = cmd.prices if "prices" in changes else None
    changes.pop("prices", None)
    planned = _check_prices(session, prices) if prices is not None else []
    planned = [change for change in planned if _price_differs(session, customer, change)]
    changes = {name: value for name, value in changes.items() if getattr(customer, name) != value}
    # -- act
    if not changes and not planned:  # nothing would change: the record as it stands, nothing written
        return Outcome("customer", customer, conflict=None)
    before = customer_view(session, customer)
    _apply_prices(call, customer, planned)
    outcome = _updated(
        call, "customer", customer, changes, lambda: customer_view(session, customer), before, changed=True
    )
    outcome.conflict = conflict
    return outcome


def _price_differs(session: Session, customer: Customer, change: PriceChange) -> bool:
    """Whether a planned override changes anything (setting the same price, or removing none, does not)."""
    kind, item_id, price = change
    column = CustomerPrice.equipment_id if kind == "equipment" else CustomerPrice.service_id
    existing = session.execute(
        select(CustomerPrice.price).where(CustomerPrice.customer_id == customer.id, column == item_id)
    ).scalar_one_or_none()
    return existing != price


def last_write_wins(base_version: int | None, current: int) -> dict[str, Any] | None:
    """Last-write-wins (sync protocol, "Conflicts"): an update edited from an older version is applied and
    reported as a conflict; a base version newer than the record's cannot exist and is refused."""
    if base_version is None or base_version == current:
        return None
    if base_version > current:
        raise ValidationError(
            f"base_version {base_version} is newer than the record's version {current}",
            "base_version",
            {"base_version": base_version, "current_version": current},
        )
    return {"base_version": base_version, "overwritten_version": current, "policy": "last_write_wins"}


def add_meter(call: Call, customer_id: int, cmd: MeterCreate) -> Outcome:
    """A meter installed at a customer's site (any user: drivers install them); the customer's doc changes."""
    session = call.session
    customer = _locked(session, Customer, "customer", customer_id)
    lookups.customer(session, customer.id)  # an inactive customer gets no new meters
    if cmd.serial is not None:
        _unique(session, Meter, "serial", cmd.serial, "meter")
    before = customer_view(session, customer)
    session.add(Meter(customer_id=customer.id, serial=cmd.serial, version=1, last_modified=call.now))
    return _updated(call, "customer", customer, {}, lambda: customer_view(session, customer), before, changed=True)


def update_meter(call: Call, customer_id: int, meter_id: int, cmd: MeterUpdate) -> Outcome:
    """Correct a meter's serial or (de)activate it: admin only (readings depend on which meter is which)."""
    require_admin(call.actor, "meter changes")
    session = call.session
    customer = _locked(session, Customer, "customer", customer_id)
    meter = session.get(Meter, meter_id)
    if meter is None or meter.customer_id != customer.id:
        raise NotFound(f"meter {meter_id} not found", {"entity": "meter", "id": meter_id})
    changes = cmd.changes()
    if changes.get("serial") is not None:
        _unique(session, Meter, "serial", changes["serial"], "meter", meter.id)
    changes = {name: value for name, value in changes.items() if getattr(meter, name) != value}
    if not changes:  # nothing would change: the customer as it stands, nothing written
        return Outcome("customer", customer)
    before = customer_view(session, customer)
    for name, value in changes.items():
        setattr(meter, name, value)
    meter.touch(call.now)
    return _updated(call, "customer", customer, {}, lambda: customer_view(session, customer), before, changed=True)
