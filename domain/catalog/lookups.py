"""Finding catalog records the way requests name them (equipment by code or id, services by code), and
refusing inactive ones for new records (`invalid_state`).

A transaction that prices many sales (a sync batch) asks for the same few records and prices again and
again, so the answers are remembered for the session's life (`session.info`): records by id and code are
held (the session's identity map alone holds them weakly, and a collected one is read again), and price
overrides by customer and item. Whatever writes price overrides calls `forget_prices`; a rolled-back
savepoint calls `forget`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

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


def _override(session: Session, customer_id: int, kind: str, item_id: int) -> Decimal | None:
    """The customer's override for one item; all of a customer's overrides are read at once."""
    prices: dict[int, dict[Any, Any]] = unit_state(session).prices
    mine = prices.get(customer_id)
    if mine is None:
        mine = prices[customer_id] = {}
        for equipment_id, service_id, price in session.execute(
            select(CustomerPrice.equipment_id, CustomerPrice.service_id, CustomerPrice.price).where(
                CustomerPrice.customer_id == customer_id
            )
        ):
            if equipment_id is not None:
                mine[("equipment", equipment_id)] = price
            elif service_id is not None:
                mine[("service", service_id)] = price
    return mine.get((kind, item_id))


def equipment_codes(session: Session) -> dict[int, str]:
    """Every equipment model's code by id (a handful of rows): documents name equipment by its code."""
    return dict(session.execute(select(EquipmentModel.id, EquipmentModel.code)).all())
