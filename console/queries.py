"""What the console's pages read: the existing reports and queries, arranged for a person to look at.

Everything here only reads. The device list and the stock figures come from `domain.reports.queries`, the
rejection list from the reconciler's table, the audit log through `domain.audit.queries`, and the chain
verification walks one page of entries per call with the cursor the browser carries (the server keeps
nothing between two calls).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.accounts.models import User
from domain.audit.models import AuditEntry
from domain.audit.queries import audit_doc
from domain.audit.verify import HEAD_MISMATCH, _check, _page, read_head
from domain.catalog.models import Customer, Depot, EquipmentModel, Truck
from domain.clock import parse_rfc3339, rfc3339
from domain.ledger import GENESIS_HASH
from domain.logistics.models import StockAdjustment
from domain.logistics.queries import adjustment_statement
from domain.reports.queries import stock_report, sync_report
from reconcile.models import AppliedChange, RejectedChange

# A device that neither pushed nor pulled for this long is stale; a clock off by more than this is skewed.
STALE_AFTER = timedelta(hours=24)
SKEW_LIMIT_MS = 5 * 60 * 1000
DEVICE_SORTS = (
    "device_id",
    "username",
    "app_version",
    "clock_skew_ms",
    "last_push_at",
    "last_pull_at",
    "lag",
    "applied",
    "duplicates",
    "rejected",
    "open_rejections",
)
RECENT = 50


def _when(text: str | None) -> datetime | None:
    return parse_rfc3339(text, "time") if text else None


def devices(
    session: Session, now: datetime, sort: str = "device_id", descending: bool = False, search: str = "", only: str = ""
) -> list[dict[str, Any]]:
    """The sync report's rows, each marked `stale` and `skewed`, filtered and sorted (None sorts first)."""
    rows = sync_report(session, now)["rows"]
    for row in rows:
        contacts = [t for t in (_when(row["last_push_at"]), _when(row["last_pull_at"])) if t is not None]
        row["stale"] = not contacts or now - max(contacts) > STALE_AFTER
        row["skewed"] = row["clock_skew_ms"] is not None and abs(row["clock_skew_ms"]) > SKEW_LIMIT_MS
    needle = search.strip().lower()
    if needle:
        rows = [r for r in rows if needle in r["device_id"].lower() or needle in (r["username"] or "").lower()]
    if only == "stale":
        rows = [r for r in rows if r["stale"]]
    elif only == "skewed":
        rows = [r for r in rows if r["skewed"]]
    elif only == "open":
        rows = [r for r in rows if r["open_rejections"]]
    key = sort if sort in DEVICE_SORTS else "device_id"
    rows.sort(key=lambda r: (r[key] is not None, r[key] if r[key] is not None else 0), reverse=descending)
    return rows


def device_page(session: Session, now: datetime, device_id: str) -> dict[str, Any] | None:
    """One device's row, its latest applied changes and its latest refusals (open and resolved)."""
    found = [r for r in devices(session, now) if r["device_id"] == device_id]
    if not found:
        return None
    applied = session.scalars(
        select(AppliedChange)
        .where(AppliedChange.device_id == device_id)
        .order_by(AppliedChange.id.desc())
        .limit(RECENT)
    ).all()
    refused = session.scalars(
        select(RejectedChange)
        .where(RejectedChange.device_id == device_id)
        .order_by(RejectedChange.id.desc())
        .limit(RECENT)
    ).all()
    names = usernames(session)
    return {
        "device": found[0],
        "applied": [
            {
                "client_temp_id": a.client_temp_id,
                "op": a.op,
                "entity": a.entity,
                "entity_id": a.entity_id,
                "at": rfc3339(a.created_at),
            }
            for a in applied
        ],
        "rejections": [rejection_view(r, names) for r in refused],
    }


def usernames(session: Session) -> dict[int, str]:
    return dict(session.execute(select(User.id, User.username)).all())


# -- the rejection inbox ---------------------------------------------------------------------------------


def rejection_view(row: RejectedChange, names: dict[int, str]) -> dict[str, Any]:
    payload = orjson.loads(row.payload)
    error = orjson.loads(row.error)
    return {
        "id": row.id,
        "device_id": row.device_id,
        "client_temp_id": row.client_temp_id,
        "op": row.op,
        "code": row.error_code,
        "payload": payload,
        "payload_text": orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode(),
        "error": error,
        "reading": read_error(error),
        "change": read_change(row.op, payload),
        "user": names.get(row.user_id, str(row.user_id)),
        "created_at": rfc3339(row.created_at),
        "resolved_at": rfc3339(row.resolved_at),
        "resolved_by": names.get(row.resolved_by) if row.resolved_by is not None else None,
    }


def read_error(error: dict[str, Any]) -> str:
    """An error as support staff read it, from its code and details."""
    code, details = error.get("code"), error.get("details") or {}
    if code == "insufficient_stock":
        where = (
            f"truck {details.get('truck')}" if details.get("place", "truck") == "truck" else str(details.get("place"))
        )
        return (
            f"Not enough stock: {where} has {details.get('available')} full {details.get('equipment')}, "
            f"the change asks for {details.get('requested')}."
        )
    if code == "meter_regression":
        return (
            f"Meter reading went backwards: the last recorded reading is {details.get('last')}, "
            f"this one is {details.get('current')} (customer {details.get('customer')}, meter {details.get('meter')})."
        )
    if code == "dependency_rejected":
        cause = details.get("cause") or {}
        return f"Depends on {cause.get('client_temp_id')}, which was refused ({cause.get('code')})."
    return str(error.get("message") or code)


def read_change(op: str, payload: dict[str, Any]) -> str:
    """One line saying what the device tried to do."""
    found = payload.get("data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    if op == "transaction.create":
        lines = [
            f"{d.get('qty')} × {d.get('equipment')} ({d.get('kind')})"
            for d in data.get("deliveries") or []
            if isinstance(d, dict)
        ]
        sale = f"Sale to customer {data.get('customer')} from truck {data.get('truck')}"
        return sale + (": " + ", ".join(lines) if lines else "")
    if op.startswith("meter_reading"):
        return f"Meter reading {data.get('reading')} at customer {data.get('customer')}"
    target = data.get("id") or data.get("transaction") or data.get("customer")
    return f"{op}" + (f" on {target}" if target is not None else "")


def inbox(session: Session) -> dict[str, Any]:
    """Open refusals grouped by error code (largest group first); each with the open refusals that depend on
    it; devices with open refusals; the latest resolved ones with who resolved them."""
    names = usernames(session)
    rows = session.scalars(
        select(RejectedChange).where(RejectedChange.resolved_at.is_(None)).order_by(RejectedChange.id)
    ).all()
    views = [rejection_view(r, names) for r in rows]
    dependents: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for view in views:
        cause = (view["error"].get("details") or {}).get("cause")
        if view["code"] == "dependency_rejected" and isinstance(cause, dict):
            dependents[(view["device_id"], str(cause.get("client_temp_id")))].append(view)
    for view in views:
        view["dependents"] = dependents.get((view["device_id"], view["client_temp_id"]), [])
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for view in views:
        groups[view["code"]].append(view)
    resolved = session.scalars(
        select(RejectedChange)
        .where(RejectedChange.resolved_at.is_not(None))
        .order_by(RejectedChange.resolved_at.desc(), RejectedChange.id.desc())
        .limit(20)
    ).all()
    return {
        # causes first: a dependent refusal is read after what it waits for
        "groups": sorted(groups.items(), key=lambda item: (item[0] == "dependency_rejected", -len(item[1]), item[0])),
        "devices": sorted({v["device_id"] for v in views}),
        "open": len(views),
        "resolved": [rejection_view(r, names) for r in resolved],
    }


def open_by_id(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    names = usernames(session)
    rows = session.scalars(select(RejectedChange).where(RejectedChange.id.in_(ids)).order_by(RejectedChange.id))
    return {r.id: rejection_view(r, names) for r in rows}


# -- stock and conservation ------------------------------------------------------------------------------


def stock_page(session: Session, now: datetime) -> dict[str, Any]:
    """Totals per model and kind of place, every holder's row, negative customer sites, and per model the
    conservation figure over time: it moves only at adjustments, so walking them back from today's total
    gives the figure before and after each one."""
    report = stock_report(session, now)
    places = ("depot", "truck", "site")
    pivot: dict[str, dict[str, int]] = {code: dict.fromkeys((*places, "total"), 0) for code in report["totals"]}
    holders = [r for r in report["rows"] if r["place"] in places]
    for row in holders:
        pivot[row["equipment"]][row["place"]] += row["total"]
        pivot[row["equipment"]]["total"] += row["total"]
    negative = [r for r in holders if r["place"] == "site" and (r["on_site"] or 0) < 0]
    codes = dict(session.execute(select(EquipmentModel.id, EquipmentModel.code)).all())
    names = usernames(session)
    holder_names = {
        "depot": dict(session.execute(select(Depot.id, Depot.code)).all()),
        "truck": dict(session.execute(select(Truck.id, Truck.plate)).all()),
        "site": dict(session.execute(select(Customer.id, Customer.name)).all()),
    }
    adjustments: list[StockAdjustment] = list(session.scalars(adjustment_statement(None, None)).all())
    series: dict[str, list[dict[str, Any]]] = {}
    for code, total in report["totals"].items():
        figure = total
        steps: list[dict[str, Any]] = [{"at": report["generated_at"], "figure": total, "adjustment": None}]
        for adj in reversed([a for a in adjustments if codes.get(a.equipment_id) == code]):
            delta = adj.full_delta + adj.empty_delta + adj.on_site_delta
            holder = adj.depot_id or adj.truck_id or adj.customer_id or 0
            steps.append(
                {
                    "at": rfc3339(adj.created_at),
                    "figure": figure,
                    "adjustment": {
                        "id": adj.id,
                        "delta": delta,
                        "before": figure - delta,
                        "place": adj.place,
                        "holder": holder_names[adj.place].get(holder, holder),
                        "reason": adj.reason,
                        "by": names.get(adj.user_id, str(adj.user_id)),
                    },
                }
            )
            figure -= delta
        series[code] = list(reversed(steps))
    return {
        "generated_at": report["generated_at"],
        "pivot": pivot,
        "rows": holders,
        "negative": negative,
        "series": series,
        "adjusted": {code: sum(1 for s in steps if s["adjustment"]) for code, steps in series.items()},
    }


# -- audit -----------------------------------------------------------------------------------------------


def entry_view(entry: AuditEntry, names: dict[int, str]) -> dict[str, Any]:
    """An entry and, when its context carries `before` / `after` documents, their difference field by field."""
    doc = audit_doc(entry)
    context = doc.get("context")
    diff: list[dict[str, Any]] = []
    if isinstance(context, dict) and ("before" in context or "after" in context):
        found_before, found_after = context.get("before"), context.get("after")
        before: dict[str, Any] = found_before if isinstance(found_before, dict) else {}
        after: dict[str, Any] = found_after if isinstance(found_after, dict) else {}
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key), after.get(key)
            diff.append(
                {
                    "field": key,
                    "before": _show(old) if key in before else "",
                    "after": _show(new) if key in after else "",
                    "change": "added" if key not in before else "removed" if key not in after else
                    ("changed" if old != new else "same"),
                }
            )  # fmt: skip
    return {
        **doc,
        "username": names.get(entry.user_id) if entry.user_id is not None else None,
        "diff": diff,
        "context_text": orjson.dumps(context, option=orjson.OPT_INDENT_2).decode(),
    }


def _show(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@dataclass(frozen=True)
class VerifyCursor:
    """Where a chain verification stands: the head it verifies up to, and the last entry found intact."""

    head_id: int
    head_hash: str | None
    prev_id: int = 0
    prev_hash: str = GENESIS_HASH
    checked: int = 0


def verify_start(session: Session) -> VerifyCursor:
    head = read_head(session)
    return VerifyCursor(head.last_id, head.hash)


def verify_step(session: Session, cursor: VerifyCursor, size: int) -> tuple[VerifyCursor, dict[str, Any] | None]:
    """Check the next `size` entries (the same checks as `domain.audit.verify.walk`); the verdict once the
    head is reached or an entry is broken, else None."""
    rows = _page(session, cursor.prev_id if cursor.prev_id else None, cursor.head_id, size)
    prev_id, prev_hash, checked = cursor.prev_id, cursor.prev_hash, cursor.checked
    for row in rows:
        reason = _check(row, prev_id, prev_hash)
        if reason is not None:
            return cursor, {"ok": False, "checked": checked, "first_broken": {"id": row.id, "reason": reason}}
        prev_id, prev_hash, checked = row.id, row.hash, checked + 1
    moved = VerifyCursor(cursor.head_id, cursor.head_hash, prev_id, prev_hash, checked)
    if rows and prev_id < cursor.head_id:
        return moved, None
    if prev_id < cursor.head_id:
        return moved, {"ok": False, "checked": checked, "first_broken": {"id": prev_id + 1, "reason": HEAD_MISMATCH}}
    if prev_hash != (cursor.head_hash or GENESIS_HASH):
        return moved, {"ok": False, "checked": checked, "first_broken": {"id": cursor.head_id, "reason": HEAD_MISMATCH}}
    return moved, {"ok": True, "checked": checked, "first_broken": None}


def audit_filters(session: Session) -> dict[str, list[str]]:
    """The values the audit filters offer: entity types and actions present in the log."""
    types = session.execute(select(AuditEntry.entity_type).distinct().order_by(AuditEntry.entity_type)).scalars()
    actions = session.execute(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).scalars()
    return {"entity_types": [t for t in types if t], "actions": [a for a in actions if a]}
