"""`domain.ledger.execute_many` and the staged rows' INSERT write what SQLAlchemy's own executemany writes:
the same values, the columns' Python-side defaults for what a row leaves out, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from domain.catalog.models import Customer
from domain.db import Database
from domain.ledger import _PLANS, _insert_rows, execute_many

ROW = {"name": "O'Hara \\ Kopi", "address": "1 Jurong Port Rd", "email": None, "created_by": 1}


def read(db: Database, names: list[str]) -> list[dict[str, Any]]:
    def go(s: Any) -> list[dict[str, Any]]:
        rows = s.execute(select(Customer.__table__).where(Customer.name.in_(names)).order_by(Customer.id)).mappings()
        return [dict(r) for r in rows]

    return db.read(go)


def test_the_fast_path_writes_what_sqlalchemy_writes(demo: Database) -> None:
    table = Customer.__table__
    before = datetime.now(UTC)
    ours = [{**ROW, "name": f"fast {i}", "meter_rate": Decimal("3.50")} for i in range(3)]
    theirs = [{**ROW, "name": f"slow {i}", "meter_rate": Decimal("3.50")} for i in range(3)]

    fast_insert = insert(table)

    def write(uow: Any) -> list[int]:
        execute_many(uow.session, fast_insert, ours)
        uow.session.execute(insert(table), theirs)
        return _insert_rows(uow.session, table, [{**ROW, "name": f"ids {i}"} for i in range(4)])

    ids = demo.run(write)
    # The fast path ran (not SQLAlchemy's, which it falls back to when a parameter is neither value nor default).
    assert _PLANS[(fast_insert, demo.engine.dialect.name, tuple(ours[0]))] is not None
    after = datetime.now(UTC)
    fast, slow = read(demo, [r["name"] for r in ours]), read(demo, [r["name"] for r in theirs])
    assert len(fast) == len(slow) == 3
    moving = ("id", "name", "created_at", "last_modified")
    for mine, stock in zip(fast, slow, strict=True):
        assert {k: v for k, v in mine.items() if k not in moving} == {k: v for k, v in stock.items() if k not in moving}
    returned = read(demo, [f"ids {i}" for i in range(4)])
    assert [r["id"] for r in returned] == ids and [r["name"] for r in returned] == [f"ids {i}" for i in range(4)]
    for row in fast + returned:
        assert row["active"] is True and row["version"] == 1 and row["address"] == "1 Jurong Port Rd"
        assert before <= row["created_at"] <= after and before <= row["last_modified"] <= after
        assert row["created_by"] == 1
