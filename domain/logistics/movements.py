"""Moving stock: lock every row a change needs at once, check, then apply. Shared by every workflow that
moves cylinders (distributions, adjustments, and sales deliveries may use it too).

`plan_moves` locks (sorted order, one call) and checks: a depot or truck quantity may never go below zero
(`insufficient_stock` naming place, holder, equipment, state, available and requested); a customer site
may. It changes nothing. `apply_moves` then writes the new quantities, one version step and one change-feed
entry (scope 0) per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from domain.errors import InsufficientStock
from domain.feed.services import record_change
from domain.logistics.docs import FEED_ENTITY, stock_doc
from domain.logistics.stock import StockKey, StockRow, lock_stock_rows
from domain.service import Call

NEVER_NEGATIVE = frozenset({"depot", "truck"})


@dataclass(frozen=True)
class Move:
    """One stock quantity changing: `state` is full, empty or on_site."""

    key: StockKey
    state: str
    row: StockRow
    before: int
    after: int


def plan_moves(session: Session, deltas: dict[tuple[StockKey, str], int], codes: dict[int, str]) -> list[Move]:
    """Lock every row at once (sorted order) and refuse if a depot or truck quantity would go below zero."""
    rows = lock_stock_rows(session, [key for key, _ in deltas])
    moves = []
    for (key, state), delta in sorted(deltas.items(), key=lambda kv: (kv[0][0].sort_key(), kv[0][1])):
        row = rows[key]
        before = getattr(row, state)
        if before + delta < 0 and key.place in NEVER_NEGATIVE:
            raise InsufficientStock(
                f"{key.place} {key.holder} has {before} {state} {codes[key.equipment]}, {-delta} requested",
                {
                    "place": key.place,
                    key.place: key.holder,
                    "equipment": codes[key.equipment],
                    "state": state,
                    "available": before,
                    "requested": -delta,
                },
            )
        moves.append(Move(key, state, row, before, before + delta))
    return moves


def apply_moves(call: Call, moves: list[Move], codes: dict[int, str]) -> list[dict[str, Any]]:
    """Move the stock; one version step and one feed entry per row. Returns the audit's stock summary."""
    touched: dict[int, StockRow] = {}
    summary = []
    for move in moves:
        setattr(move.row, move.state, move.after)
        touched[id(move.row)] = move.row
        summary.append(
            {
                "place": move.key.place,
                "holder": move.key.holder,
                "equipment": codes[move.key.equipment],
                "state": move.state,
                "before": move.before,
                "after": move.after,
            }
        )
    for row in touched.values():
        row.touch(call.now)
        code = codes[row.equipment_id]
        record_change(call.session, FEED_ENTITY[type(row)], row, doc=lambda r=row, c=code: stock_doc(r, c))  # type: ignore[misc]
    return summary
