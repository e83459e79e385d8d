"""Stock rows, stock adjustments and distributions as the API and the feed show them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.clock import rfc3339
from domain.logistics.models import DepotStock, Distribution, SiteStock, StockAdjustment, TruckStock

FEED_ENTITY = {DepotStock: "depot_stock", TruckStock: "truck_stock", SiteStock: "site_stock"}


def stock_doc(row: DepotStock | TruckStock | SiteStock, equipment_code: str) -> dict[str, Any]:
    """`{"place", "depot"|"truck"|"customer": id, "equipment": code, "full", "empty"}` or `"on_site"`."""
    base: dict[str, Any] = {"id": row.id, "equipment": equipment_code}
    if isinstance(row, DepotStock):
        base.update(place="depot", depot=row.depot_id, full=row.full, empty=row.empty)
    elif isinstance(row, TruckStock):
        base.update(place="truck", truck=row.truck_id, full=row.full, empty=row.empty)
    else:
        base.update(place="site", customer=row.customer_id, on_site=row.on_site)
    base.update(version=row.version, last_modified=rfc3339(row.last_modified))
    return base


def distribution_doc(d: Distribution, codes: Mapping[int, str]) -> dict[str, Any]:
    """A distribution with its items; `number` is null until confirmed. `codes`: equipment code by id."""
    return {
        "id": d.id,
        "version": d.version,
        "last_modified": rfc3339(d.last_modified),
        "number": d.number,
        "status": d.status,
        "depot": d.depot_id,
        "truck": d.truck_id,
        "driver": d.driver_id,
        "items": [
            {"equipment": codes[i.equipment_id], "movement_type": i.movement_type, "qty": i.qty} for i in d.items
        ],
        "occurred_at": rfc3339(d.occurred_at),
        "created_at": rfc3339(d.created_at),
        "confirmed_at": rfc3339(d.confirmed_at),
        "cancelled_at": rfc3339(d.cancelled_at),
    }


def adjustment_doc(a: StockAdjustment, equipment_code: str) -> dict[str, Any]:
    """An admin's stock adjustment: where, which model, the signed deltas, why and who."""
    holder = {"depot": a.depot_id, "truck": a.truck_id, "site": a.customer_id}[a.place]
    holder_field = {"depot": "depot", "truck": "truck", "site": "customer"}[a.place]
    return {
        "id": a.id,
        "place": a.place,
        holder_field: holder,
        "equipment": equipment_code,
        "full_delta": a.full_delta,
        "empty_delta": a.empty_delta,
        "on_site_delta": a.on_site_delta,
        "reason": a.reason,
        "user": a.user_id,
        "created_at": rfc3339(a.created_at),
    }
