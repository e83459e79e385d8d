"""Finding catalog records the way requests name them (equipment by code or id, services by code), and
refusing inactive ones for new records (`invalid_state`).

A transaction that prices many sales (a sync batch) asks for the same few records and prices again and
again, so the answers are remembered for the unit's life (`unit_state`): records by id and code are
held (the session's identity map alone holds them weakly, and a collected one is read again), and price
overrides by customer and item. Whatever writes price overrides calls `forget_prices`; a rolled-back
savepoint forgets them all.

A sale names a customer, a truck, some equipment and services, and needs the customer's prices for them:
`warm_sale` reads all of that in one statement (one round trip instead of five), and the lookups below
then find it remembered. It only fills the memory; what it does not find, the lookups read and refuse as
usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session, defer

from domain.catalog.models import Customer, CustomerPrice, Depot, EquipmentModel, Meter, Service, Truck
from domain.errors import InvalidState, NotFound
from domain.ledger import unit_state


def _remembered(session: Session, key: Any, load: Callable[[], Any]) -> Any:
    """`load()`, remembered under `key` for the session's life once it found something."""
    cache = unit_state(session).catalog
    found = cache.get(key)
    if found is None:
        found = load()
        if found is not None:
            cache[key] = found
    return found


def held(session: Session, model: Any, record_id: int) -> Any:
    """`session.get`, holding the record for the session's life (None when there is no such record)."""
    return _remembered(session, (model, record_id), lambda: session.get(model, record_id))


def forget_prices(session: Session) -> None:
    unit_state(session).prices.clear()


def _by_code_or_id(session: Session, model: Any, entity: str, code_or_id: int | str, for_use: bool) -> Any:
    """A record named by its id or its code; `not_found`, or `invalid_state` when inactive and `for_use`."""
    if isinstance(code_or_id, int):
        found = held(session, model, code_or_id)
    else:  # codes never change once created
        found = _remembered(
            session,
            (model, "code", code_or_id),
            lambda: session.execute(select(model).where(model.code == code_or_id)).scalar_one_or_none(),
        )
    if found is None:
        raise NotFound(f"{entity} {code_or_id!r} not found", {"entity": entity, "id": code_or_id})
    if for_use and not found.active:
        raise InvalidState(f"{entity} {found.code} is inactive", {"entity": entity, "id": found.id})
    return found


def equipment(session: Session, code_or_id: int | str, *, for_use: bool = True) -> EquipmentModel:
    return _by_code_or_id(session, EquipmentModel, "equipment", code_or_id, for_use)  # type: ignore[no-any-return]


def service(session: Session, code_or_id: int | str, *, for_use: bool = True) -> Service:
    return _by_code_or_id(session, Service, "service", code_or_id, for_use)  # type: ignore[no-any-return]


def _get(session: Session, model: type, entity: str, record_id: int, for_use: bool) -> object:
    found = held(session, model, record_id)
    if found is None:
        raise NotFound(f"{entity} {record_id} not found", {"entity": entity, "id": record_id})
    if for_use and not found.active:
        raise InvalidState(f"{entity} {record_id} is inactive", {"entity": entity, "id": record_id})
    return found


def depot(session: Session, depot_id: int, *, for_use: bool = True) -> Depot:
    return _get(session, Depot, "depot", depot_id, for_use)  # type: ignore[return-value]


def truck(session: Session, truck_id: int, *, for_use: bool = True) -> Truck:
    return _get(session, Truck, "truck", truck_id, for_use)  # type: ignore[return-value]


def customer(session: Session, customer_id: int, *, for_use: bool = True) -> Customer:
    return _get(session, Customer, "customer", customer_id, for_use)  # type: ignore[return-value]


def customer_meters(session: Session, customer_id: int) -> list[Meter]:
    return list(session.scalars(select(Meter).where(Meter.customer_id == customer_id).order_by(Meter.id)))


def equipment_price(session: Session, customer_id: int, item: EquipmentModel) -> Decimal:
    """The customer's own price for a full cylinder of this model, else the catalog's."""
    override = _override(session, customer_id, "equipment", item.id)
    return override if override is not None else item.unit_price


def service_price(session: Session, customer_id: int, item: Service) -> Decimal:
    """The customer's own fee for this service, else the catalog's."""
    override = _override(session, customer_id, "service", item.id)
    return override if override is not None else item.price


_ALL = "all"  # in a customer's known prices: every override of the customer has been read


def _override(session: Session, customer_id: int, kind: str, item_id: int) -> Decimal | None:
    """The customer's override for one item (None: the catalog's price applies). Known per item (from
    `warm_sale`) or, otherwise, from all of the customer's overrides, read at once."""
    mine = unit_state(session).prices.setdefault(customer_id, {})
    key = (kind, item_id)
    if key not in mine and _ALL not in mine:
        for equipment_id, service_id, price in session.execute(
            select(CustomerPrice.equipment_id, CustomerPrice.service_id, CustomerPrice.price).where(
                CustomerPrice.customer_id == customer_id
            )
        ):
            _know_price(mine, equipment_id, service_id, price)
        mine[_ALL] = True
    return mine.get(key)  # type: ignore[no-any-return]


def _know_price(mine: dict[Any, Any], equipment_id: int | None, service_id: int | None, price: Any) -> None:
    if equipment_id is not None:
        mine[("equipment", equipment_id)] = price
    elif service_id is not None:
        mine[("service", service_id)] = price


def _named(model: Any, name: str) -> Any:
    """`model` rows named by id or by code (an empty list names none)."""
    return or_(
        model.id.in_(bindparam(f"{name}_ids", expanding=True)),
        model.code.in_(bindparam(f"{name}_codes", expanding=True)),
    )


# Columns a sale never reads, left out of its one read (each column of a result costs the driver ~10 us to
# describe); an attribute read anyway is loaded then, by its own SELECT.
_NOT_FOR_A_SALE = [
    *(
        getattr(model, name)
        for model in (Customer, Truck, EquipmentModel, Service)
        for name in ("version", "last_modified")
    ),
    Customer.phone,
    Customer.created_by,
    Customer.created_at,
]

# Built once: one row per (equipment, service) pair named, with the customer's overrides for either joined.
_WARM_SALE = (
    select(Customer, Truck, EquipmentModel, Service)
    .add_columns(CustomerPrice.equipment_id, CustomerPrice.service_id, CustomerPrice.price)
    .select_from(Customer)
    .outerjoin(Truck, Truck.id == bindparam("truck"))
    .outerjoin(EquipmentModel, _named(EquipmentModel, "equipment"))
    .outerjoin(Service, _named(Service, "services"))
    .outerjoin(
        CustomerPrice,
        and_(
            CustomerPrice.customer_id == Customer.id,
            or_(CustomerPrice.equipment_id == EquipmentModel.id, CustomerPrice.service_id == Service.id),
        ),
    )
    .where(Customer.id == bindparam("customer"))
    .options(*[defer(c) for c in _NOT_FOR_A_SALE])
)


def warm_sale(
    session: Session,
    customer_id: int,
    truck_id: int,
    equipment_refs: Sequence[int | str],
    service_refs: Sequence[int | str],
) -> None:
    """Remember, in one statement, the records a sale names and the customer's prices for its items.

    One row per (equipment, service) pair named, each with its override rows joined: the customer and the
    truck by id, equipment and services by id or code, outer-joined so that what is missing is simply not
    remembered (the lookups then read it again and refuse it). Nothing is read when all of it is known."""
    cache = unit_state(session).catalog
    wanted: list[tuple[Any, ...]] = [(Customer, customer_id), (Truck, truck_id)]
    wanted += [(EquipmentModel, r) if isinstance(r, int) else (EquipmentModel, "code", r) for r in equipment_refs]
    wanted += [(Service, r) if isinstance(r, int) else (Service, "code", r) for r in service_refs]
    if all(key in cache for key in wanted):
        return

    params: dict[str, Any] = {"customer": customer_id, "truck": truck_id}
    for name, refs in (("equipment", equipment_refs), ("services", service_refs)):
        params[f"{name}_ids"] = [r for r in refs if isinstance(r, int)]
        params[f"{name}_codes"] = [r for r in refs if not isinstance(r, int)]
    rows = session.execute(_WARM_SALE, params).all()
    if not rows:
        return  # no such customer: `customer()` refuses it
    mine = unit_state(session).prices.setdefault(customer_id, {})
    known: dict[Any, Any] = {}
    for found, truck_row, item, fee, equipment_id, service_id, price in rows:
        cache[(Customer, found.id)] = found
        if truck_row is not None:
            cache[(Truck, truck_row.id)] = truck_row
        for record in (item, fee):
            if record is not None:
                cache[(type(record), record.id)] = record
                cache[(type(record), "code", record.code)] = record
        if item is not None:
            known.setdefault(("equipment", item.id), None)  # no override unless a row below says so
        if fee is not None:
            known.setdefault(("service", fee.id), None)
        _know_price(known, equipment_id, service_id, price)
    for key, price in known.items():
        mine.setdefault(key, price)


def equipment_codes(session: Session) -> dict[int, str]:
    """Every equipment model's code by id (a handful of rows): documents name equipment by its code."""
    return dict(session.execute(select(EquipmentModel.id, EquipmentModel.code)).all())
