"""The number of SQL statements a push sends, counted at the cursor (`before_cursor_execute`).

Each statement is a network round trip on MariaDB, and the fixed cost per push is what a fleet of tablets
pushing one change at a time pays; these budgets make any growth a visible, reviewed change. Counts are
deterministic: steady state (the device already registered, the catalog warm in the database, not in
memory), one request each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, update
from starlette.testclient import TestClient

from domain.db import Database
from domain.logistics.models import TruckStock
from tests.bench.floor_sale import OUR_SALE_TRIPS
from tests.conftest import ENGINE

BATCH = 500


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """Every round trip to the database: statements, and the COMMITs, ROLLBACKs and pings besides them (on
    MariaDB counted where PyMySQL sends them; on SQLite, where SQLAlchemy calls the driver)."""
    trips: list[str] = []

    def statement(conn: Any, cursor: Any, text: str, params: Any, context: Any, executemany: bool) -> None:
        trips.append(" ".join(text.split())[:150])

    # The driver calls themselves, whoever makes them (a Session, a Connection, the pool's reset on return).
    dialect = db.engine.dialect
    plain = {name: getattr(dialect, name) for name in ("do_commit", "do_rollback", "do_ping")}

    def counting(name: str, label: str) -> Callable[[Any], Any]:
        def call(dbapi_conn: Any) -> Any:
            trips.append(label)
            return plain[name](dbapi_conn)

        return call

    event.listen(db.engine, "before_cursor_execute", statement)
    if ENGINE == "mysql":
        # What PyMySQL sends: a unit whose last statement committed makes no COMMIT trip (domain.db).
        import pymysql.connections

        driver = pymysql.connections.Connection
        sent = {name: getattr(driver, name) for name in ("commit", "rollback", "ping")}

        def sending(name: str, label: str) -> Callable[..., Any]:
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                trips.append(label)
                return sent[name](self, *args, **kwargs)

            return call

        for name, label in (("commit", "COMMIT"), ("rollback", "ROLLBACK"), ("ping", "PING")):
            setattr(driver, name, sending(name, label))
        try:
            yield trips
        finally:
            for name, method in sent.items():
                setattr(driver, name, method)
            event.remove(db.engine, "before_cursor_execute", statement)
        return
    dialect.do_commit = counting("do_commit", "COMMIT")  # type: ignore[method-assign]
    dialect.do_rollback = counting("do_rollback", "ROLLBACK")  # type: ignore[method-assign]
    dialect.do_ping = counting("do_ping", "PING")  # type: ignore[method-assign]
    try:
        yield trips
    finally:
        for name in plain:
            delattr(dialect, name)
        event.remove(db.engine, "before_cursor_execute", statement)


def customer(n: int) -> dict[str, Any]:
    return {
        "client_temp_id": f"c-{n}",
        "op": "customer.create",
        "data": {"name": f"Eating House {n}", "address": f"{n} Jurong Port Rd", "email": f"c{n}@example.sg"},
    }


def sale(n: int) -> dict[str, Any]:
    return {
        "client_temp_id": f"s-{n}",
        "op": "transaction.create",
        "data": {
            "customer": 1 + n % 5,
            "truck": 1,
            "confirm": True,
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
            "services": [{"code": "DELIVERY", "qty": 1}],
        },
    }


def push(client: TestClient, headers: dict[str, str], changes: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/sync/push", json={"device_id": "tab-count", "changes": changes}, headers=headers)
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"applied"}


SIDE_TRIPS = {"COMMIT", "ROLLBACK", "PING"}
# (statements, round trips) for: 1-change customer, 1-change confirmed sale, 500 customers, 500 confirmed
# sales; per engine (SQLite's BEGIN IMMEDIATE is a statement, MariaDB's BEGIN is implicit).
BUDGET = {
    "sqlite": ((9, 11), (19, 21), (17, 19), (50, 52)),
    "mysql": ((2, 2), (4, 4), (5, 5), (17, 17)),
}


@pytest.fixture
def stocked(demo: Database) -> Database:
    with demo.engine.begin() as conn:
        conn.execute(update(TruckStock).where(TruckStock.truck_id == 1).values(full=100_000))
    return demo


def test_statements_per_push(stocked: Database, client: TestClient, driver_headers: dict[str, str]) -> None:
    # Registers the device and serves each of the 5 customers once (a customer's first sale creates its site
    # stock rows; the steady state is a customer served before). Nothing is warmed in memory.
    warm = [dict(sale(k), client_temp_id=f"warm-{k}") for k in range(5)]
    push(client, driver_headers, [customer(0), *warm])
    counts, seen = [], []
    cases = (
        [customer(1)],
        [sale(1)],
        [customer(n) for n in range(2, 2 + BATCH)],
        [sale(n) for n in range(2, 2 + BATCH)],
    )
    for changes in cases:
        with counted(stocked) as trips:
            push(client, driver_headers, changes)
        counts.append((sum(1 for t in trips if t not in SIDE_TRIPS), len(trips)))
        seen.append("\n  ".join([f"{changes[0]['op']} x{len(changes)}: {counts[-1]}", *trips]))
    assert tuple(counts) == BUDGET[ENGINE], "\n".join(seen)


def test_the_benchmark_names_the_sale_round_trips_pinned_here() -> None:
    assert BUDGET["mysql"][1][1] == OUR_SALE_TRIPS
