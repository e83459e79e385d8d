"""Text with quotes, backslashes and LIKE wildcards is stored and found exactly as sent, on both engines.

On MariaDB the server runs with NO_BACKSLASH_ESCAPES (domain/db.py), so PyMySQL quotes strings by doubling
quotes; a backslash must still arrive as a backslash, in a push, in a REST write, in a search and in a
`LIKE ... ESCAPE` that SQLAlchemy renders as a literal."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from domain.accounts.models import User
from domain.catalog.models import Customer
from domain.db import Database
from tests.support.sync_support import by_temp_id, push

NAMES = [
    "O'Brien \\ Kopi",
    'Ah Seng "Lucky" \\\\ Store',
    "\\' OR '1'='1",
    "50% _off_ \\n not a line break",
    "陈记 \\x00 Ünïcödé ''",
]


def test_quotes_and_backslashes_round_trip_by_push_rest_and_pull(
    demo: Database, client: TestClient, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    if demo.dialect == "mysql":
        mode = demo.read(lambda s: s.execute(text("SELECT @@SESSION.sql_mode")).scalar_one())
        assert "NO_BACKSLASH_ESCAPES" in mode.split(",")
    changes = [
        {"client_temp_id": f"q-{i}", "op": "customer.create", "data": {"name": name, "address": f"{name} Rd"}}
        for i, name in enumerate(NAMES)
    ]
    results = by_temp_id(push(client, driver_headers, changes))
    ids = {results[f"q-{i}"]["id"]: name for i, name in enumerate(NAMES)}
    assert all(r["status"] == "applied" for r in results.values()), results
    stored = demo.read(lambda s: dict(s.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids))).all()))
    assert stored == ids
    for customer_id, name in ids.items():
        doc = client.get(f"/api/v1/customers/{customer_id}/", headers=driver_headers).json()
        assert doc["name"] == name and doc["address"] == f"{name} Rd"
    pulled: dict[int, Any] = {}
    since = 0
    while True:
        page = client.get("/api/v1/sync/changes", params={"since": since}, headers=admin_headers).json()
        pulled |= {r["id"]: r["doc"]["name"] for r in page["results"] if r["entity"] == "customer" and r["doc"]}
        since = page["last_seq"]
        if not page["pending"]:
            break
    assert {k: pulled[k] for k in ids} == ids
    # Searches: a LIKE with autoescape, through a bound parameter.
    for name in NAMES:
        found = client.get("/api/v1/customers/", params={"search": name}, headers=driver_headers).json()
        assert [c["name"] for c in found["results"]] == [name], (name, found)


def test_a_like_with_a_literal_backslash_escape_finds_only_what_it_should(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    for username, full_name in (("bslash", "Back \\ Slash"), ("pcent", "Per%cent_x"), ("plainuser", "Plain")):
        r = client.post(
            "/api/v1/users/",
            json={"username": username, "password": "a-long-password-2026", "role": "driver", "full_name": full_name},
            headers=admin_headers,
        )
        assert r.status_code == 201, r.text
    names = demo.read(lambda s: dict(s.execute(select(User.username, User.full_name)).all()))
    assert names["bslash"] == "Back \\ Slash" and names["pcent"] == "Per%cent_x"

    def search(term: str) -> list[str]:
        page = client.get("/api/v1/users/", params={"search": term}, headers=admin_headers).json()
        return sorted(u["username"] for u in page["results"])

    assert search("\\") == ["bslash"]
    assert search("_") == ["pcent"]
    assert search("%") == ["pcent"]
    assert search("k \\ s") == ["bslash"]


def test_rows_rendered_as_sql_text_are_exactly_what_pymysql_renders(demo: Database) -> None:
    """The batch writes render their rows' values themselves (`domain.ledger.row_literals`, a fast path for
    strings, integers, NULL, amounts and flags); the text must be PyMySQL's own `mogrify` of the same values, for every kind
    of value a row carries. SQLite has no such text: there the renderer is not offered."""
    from datetime import datetime
    from decimal import Decimal

    from domain.ledger import row_literals

    def check(session: Any) -> None:
        dbapi = session.connection().connection.dbapi_connection
        literal = row_literals(dbapi)
        if demo.dialect != "mysql":
            assert literal is None
            return
        assert literal is not None
        cursor = dbapi.cursor()
        rows = [
            tuple(NAMES),
            (0, -7, 2**63 - 1, None, True, False, Decimal("12.70"), Decimal("-0.005"), 1.5, 1e-9),
            ("", "'", "''", "\\", "%s", "%(x)s", "😀", "\n\r\t\x00", datetime(2026, 12, 6, 23, 59, 59, 123456)),
            (b"\x00'\\bytes", bytearray(b"ab"), "2026-12-06 23:59:59.123456", 3),
        ]
        for row in rows:
            group = "(" + ",".join(["%s"] * len(row)) + ")"
            assert literal(row) == cursor.mogrify(group, row), row
        for bad in (Decimal("NaN"), Decimal("-Infinity")):  # refused as PyMySQL refuses them
            with pytest.raises(pymysql.err.ProgrammingError):
                literal((bad,))
        # And the server reads each string back exactly.
        for name in NAMES:
            assert session.execute(text("SELECT " + literal((name,))[1:-1])).scalar_one() == name

    demo.read(check)
