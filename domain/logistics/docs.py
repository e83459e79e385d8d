"""Stock rows as the API and the feed show them."""

from __future__ import annotations

from typing import Any

from domain.clock import rfc3339
from domain.logistics.models import DepotStock, SiteStock, TruckStock

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
