"""Locking stock rows: always in one fixed order, so that two transactions never deadlock on them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, true, tuple_
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.ledger import unit_state, write_late
from domain.logistics.models import DepotStock, SiteStock, TruckStock

# The fixed order: by table (depot_stock < site_stock < truck_stock), then holder id, then equipment id.
PLACES: dict[str, tuple[Any, str]] = {
    "depot": (DepotStock, "depot_id"),
    "site": (SiteStock, "customer_id"),
    "truck": (TruckStock, "truck_id"),
}
PLACE_ORDER = {"depot": 0, "site": 1, "truck": 2}

StockRow = DepotStock | SiteStock | TruckStock
# Locked by each unit before it changes them: a push writes their new values with its locked writes.
write_late(DepotStock, SiteStock, TruckStock)


class StockKey(NamedTuple):
    """A stock row: `place` is depot, truck or site; `holder` the depot, truck or customer id."""

    place: str
    holder: int
    equipment: int

    def sort_key(self) -> tuple[int, int, int]:
        return PLACE_ORDER[self.place], self.holder, self.equipment


def lock_stock_rows(
    session: Session, keys: Iterable[StockKey], before_create: Callable[[], None] | None = None
) -> dict[StockKey, StockRow]:
    """Lock (`SELECT ... FOR UPDATE`) and load the stock rows for `keys`, creating missing ones at zero.

    Rows are locked in one fixed sorted order. A row already locked by this transaction is returned as it
    is in the session (with this transaction's pending changes); others are read fresh after the lock.
    `before_create` runs once, before the first missing row is created (a caller's last check that may
    still refuse without having written anything).
    """
    locked: dict[StockKey, StockRow] = unit_state(session).stock_locks
    wanted = sorted({StockKey(*k) for k in keys} - locked.keys(), key=StockKey.sort_key)
    if _one_site_and_trucks(wanted):
        found = _lock_site_and_trucks(session, wanted, locked)
        wanted = [k for k in wanted if k not in found]  # a missing row: the usual way below creates it
    for place in sorted({k.place for k in wanted}, key=PLACE_ORDER.__getitem__):
        model, holder_col = PLACES[place]
        place_keys = [k for k in wanted if k.place == place]
        found = _select_for_update(session, place, place_keys, locked)
        missing = [k for k in place_keys if k not in found]
        if missing:  # first use of a site (or a new model): create at zero, then lock
            if before_create is not None:
                before_create()
                before_create = None
            _create_missing(session, model, holder_col, missing)
            _select_for_update(session, place, missing, locked)
    return {StockKey(*k): locked[StockKey(*k)] for k in keys}


def _select_for_update(
    session: Session, place: str, keys: list[StockKey], locked: dict[StockKey, StockRow]
) -> set[StockKey]:
    """Record locks only (READ COMMITTED takes no gap locks on a unique-key search), in index order."""
    holder_col = PLACES[place][1]
    rows = session.scalars(_LOCK[place], {"keys": [(k.holder, k.equipment) for k in keys]}).all()
    found = set()
    for row in rows:
        key = StockKey(place, getattr(row, holder_col), row.equipment_id)
        locked[key] = row
        found.add(key)
    return found


def _one_site_and_trucks(keys: list[StockKey]) -> bool:
    """A sale's usual rows: one site row and the truck's rows for it (one equipment model delivered)."""
    return len(keys) > 1 and keys[0].place == "site" and all(k.place == "truck" for k in keys[1:])


def _lock_site_and_trucks(session: Session, keys: list[StockKey], locked: dict[StockKey, StockRow]) -> set[StockKey]:
    """The site row and the truck rows locked by one statement (a round trip and a statement's CPU less than
    one per table). `STRAIGHT_JOIN` reads the one site row first, then the truck rows in their index order:
    the fixed order, as two statements would lock them. When the site row is missing nothing more is read (so
    nothing is locked); when a truck row is, the site row is locked and nothing comes back: either way the
    caller locks what is not found the usual way, which creates missing rows."""
    site, trucks = keys[0], keys[1:]
    rows = session.execute(
        _LOCK_SITE_AND_TRUCKS,
        {"customer": site.holder, "equipment": site.equipment, "trucks": [(k.holder, k.equipment) for k in trucks]},
    ).all()
    found: set[StockKey] = set()
    for site_row, truck_row in rows:
        for key, row in ((site, site_row), (StockKey("truck", truck_row.truck_id, truck_row.equipment_id), truck_row)):
            locked[key] = row
            found.add(key)
    return found if len(found) == len(keys) else set()


def _lock_statement(model: Any, holder_col: str) -> Any:
    holder = getattr(model, holder_col)
    return (
        select(model)
        .where(tuple_(holder, model.equipment_id).in_(bindparam("keys", expanding=True)))
        .order_by(holder, model.equipment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


_LOCK = {place: _lock_statement(model, holder_col) for place, (model, holder_col) in PLACES.items()}  # built once
_LOCK_SITE_AND_TRUCKS = (
    select(SiteStock, TruckStock)
    .prefix_with("STRAIGHT_JOIN", dialect="mysql")
    .select_from(SiteStock)
    .join(TruckStock, true())
    .where(
        SiteStock.customer_id == bindparam("customer"),
        SiteStock.equipment_id == bindparam("equipment"),
        tuple_(TruckStock.truck_id, TruckStock.equipment_id).in_(bindparam("trucks", expanding=True)),
    )
    .order_by(TruckStock.truck_id, TruckStock.equipment_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _create_missing(session: Session, model: Any, holder_col: str, keys: list[StockKey]) -> None:
    """Insert-or-ignore the rows in sorted order (a concurrent creator of the same row makes this wait)."""
    now = utcnow()
    values = [{holder_col: k.holder, "equipment_id": k.equipment, "version": 1, "last_modified": now} for k in keys]
    table = model.__table__
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sqlite_dialect.insert(table).values(values).on_conflict_do_nothing())
    else:
        maria = mysql_dialect.insert(table).values(values)
        session.execute(maria.on_duplicate_key_update({"id": table.c.id}))


def locked_stock(session: Session) -> dict[StockKey, StockRow]:
    """The rows this transaction has locked so far (their objects hold its pending changes)."""
    return unit_state(session).stock_locks
