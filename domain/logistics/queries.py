"""Reading stock and distributions: the statements behind the lists (no writes here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, literal, null, select, union_all
from sqlalchemy.orm import Session, selectinload

from domain.catalog.models import EquipmentModel
from domain.clock import rfc3339, zone
from domain.logistics.models import DepotStock, Distribution, SiteStock, StockAdjustment, TruckStock

HOLDER = {"depot": "depot", "truck": "truck", "site": "customer"}


@dataclass(frozen=True)
class StockFilter:
    place: str | None = None
    depot: int | None = None
    truck: int | None = None
    customer: int | None = None
    equipment: int | str | None = None


def _equipment_clause(value: int | str) -> Any:
    return EquipmentModel.id == value if isinstance(value, int) else EquipmentModel.code == value


def stock_statement(f: StockFilter) -> Select[Any] | None:
    """Depot, truck and site rows in one list, ordered by place (depot, site, truck) then id.

    Filters combine with AND: `depot=1` lists depot 1's rows only, `depot=1&truck=2` matches nothing."""
    parts = []
    places: list[tuple[int, str, Any, Any]] = [
        (0, "depot", DepotStock, DepotStock.depot_id),
        (1, "site", SiteStock, SiteStock.customer_id),
    ]
    places.append((2, "truck", TruckStock, TruckStock.truck_id))
    wanted = {"depot": f.depot, "truck": f.truck, "site": f.customer}
    for rank, place, model, holder in places:
        if f.place not in (None, place):
            continue
        if any(value is not None for other, value in wanted.items() if other != place):
            continue
        is_site = place == "site"
        stmt = select(
            literal(rank).label("rank"),
            literal(place).label("place"),
            model.id.label("id"),
            holder.label("holder"),
            EquipmentModel.code.label("equipment"),
            (null() if is_site else model.full).label("full"),
            (null() if is_site else model.empty).label("empty"),
            (model.on_site if is_site else null()).label("on_site"),
            model.version.label("version"),
            model.last_modified.label("last_modified"),
        ).join(EquipmentModel, EquipmentModel.id == model.equipment_id)
        if wanted[place] is not None:
            stmt = stmt.where(holder == wanted[place])
        if f.equipment is not None:
            stmt = stmt.where(_equipment_clause(f.equipment))
        parts.append(stmt)
    if not parts:  # filters no place can match (place=truck&depot=1): nothing to list
        return None
    union = union_all(*parts).subquery()
    return select(union).order_by(union.c.rank, union.c.id)


def stock_row_doc(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A union row as `stock_doc` shows a stock row."""
    doc: dict[str, Any] = {"id": row["id"], "equipment": row["equipment"], "place": row["place"]}
    doc[HOLDER[row["place"]]] = row["holder"]
    if row["place"] == "site":
        doc["on_site"] = row["on_site"]
    else:
        doc.update(full=row["full"], empty=row["empty"])
    last_modified = row["last_modified"]
    if isinstance(last_modified, str):  # a union column loses its type on some engines
        last_modified = datetime.fromisoformat(last_modified)
    doc.update(version=row["version"], last_modified=rfc3339(last_modified))
    return doc


def stock_totals(session: Session, equipment: int | str | None = None) -> list[dict[str, Any]]:
    """Per equipment model: cylinders at depots, on trucks and at sites; their sum is the conservation figure."""
    models = select(EquipmentModel.id, EquipmentModel.code).order_by(EquipmentModel.id)
    if equipment is not None:
        models = models.where(_equipment_clause(equipment))
    totals: dict[int, dict[str, Any]] = {
        eid: {
            "equipment": code,
            "depot": {"full": 0, "empty": 0},
            "truck": {"full": 0, "empty": 0},
            "site": {"on_site": 0},
        }
        for eid, code in session.execute(models)
    }
    for place, model in (("depot", DepotStock), ("truck", TruckStock)):
        sums = select(model.equipment_id, func.sum(model.full), func.sum(model.empty)).group_by(model.equipment_id)
        for eid, full, empty in session.execute(sums):
            if eid in totals:
                totals[eid][place] = {"full": int(full or 0), "empty": int(empty or 0)}
    sites = select(SiteStock.equipment_id, func.sum(SiteStock.on_site)).group_by(SiteStock.equipment_id)
    for eid, on_site in session.execute(sites):
        if eid in totals:
            totals[eid]["site"] = {"on_site": int(on_site or 0)}
    for t in totals.values():
        t["total"] = sum(t["depot"].values()) + sum(t["truck"].values()) + t["site"]["on_site"]
    return list(totals.values())


@dataclass(frozen=True)
class DistributionFilter:
    owner: int | None = None  # a driver's own only (policy.owner_filter)
    status: str | None = None
    depot: int | None = None
    truck: int | None = None
    driver: int | None = None
    date_from: date | None = None
    date_to: date | None = None


def day_start(day: date, tz_name: str) -> datetime:
    """Midnight of a business day (Singapore by default), in UTC."""
    return datetime.combine(day, time.min, tzinfo=zone(tz_name)).astimezone(UTC)


def distribution_statement(f: DistributionFilter, tz_name: str) -> Select[Any]:
    """Distributions by id; dates are business days of the visit (`occurred_at`, else when it was created)."""
    stmt = select(Distribution).options(selectinload(Distribution.items)).order_by(Distribution.id)
    if f.owner is not None:
        stmt = stmt.where(Distribution.driver_id == f.owner)
    for column, value in (
        (Distribution.status, f.status),
        (Distribution.depot_id, f.depot),
        (Distribution.truck_id, f.truck),
        (Distribution.driver_id, f.driver),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    when = func.coalesce(Distribution.occurred_at, Distribution.created_at)
    if f.date_from is not None:
        stmt = stmt.where(when >= day_start(f.date_from, tz_name))
    if f.date_to is not None:
        stmt = stmt.where(when < day_start(f.date_to + timedelta(days=1), tz_name))
    return stmt


def adjustment_statement(place: str | None, equipment: int | str | None) -> Select[Any]:
    stmt = select(StockAdjustment).order_by(StockAdjustment.id)
    if place is not None:
        stmt = stmt.where(StockAdjustment.place == place)
    if equipment is not None:
        stmt = stmt.join(EquipmentModel, EquipmentModel.id == StockAdjustment.equipment_id).where(
            _equipment_clause(equipment)
        )
    return stmt
