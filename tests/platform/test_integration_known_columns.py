"""The engine's MariaDB connections keep the column metadata they have parsed (`domain.driver`): every result
must read exactly as PyMySQL's own connection reads it, the first time and every time after, whatever types
its columns have; columns that differ in anything (type, charset, table, name) are never confused; and the
connection never remembers more than its limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from domain import driver
from domain.db import NO_BACKSLASH_ESCAPES, Database
from domain.driver import KnownColumnsConnection

pytestmark = pytest.mark.mysql_only

TABLE = """CREATE TEMPORARY TABLE known_columns (
    id INT PRIMARY KEY, big BIGINT, amount DECIMAL(12, 2), ratio DOUBLE, flag BOOLEAN, name VARCHAR(50),
    note TEXT, raw VARBINARY(20), blob_ BLOB, doc JSON, at DATETIME(6), day DATE, span TIME, tiny TINYINT
) CHARACTER SET utf8mb4"""
ROWS = [
    "(1, 9007199254740993, 12.50, 0.1, TRUE, 'Ah Seng', 'Kopi O', X'00FF10', X'DEADBEEF', '{\"a\": [1, 2]}', "
    "'2026-12-07 10:11:12.123456', '2026-12-07', '-01:02:03', -5)",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, -1, -0.01, 1e300, FALSE, '陈记 \\ ''quoted''', '', X'', X'', 'null', '1970-01-01 00:00:00', "
    "'0001-01-01', '838:59:59', 127)",
]
QUERIES = [
    "SELECT * FROM known_columns ORDER BY id",
    "SELECT id, CAST(doc AS BINARY) AS doc, CAST(name AS BINARY) AS name FROM known_columns ORDER BY id",
    # the same names with other types, one after the other: a cache keyed by name would mix them up
    "SELECT 1 AS a, 'x' AS b",
    "SELECT 'one' AS a, 2.5 AS b",
    "SELECT CAST(1.25 AS DECIMAL(5, 2)) AS a, NOW() - INTERVAL 1 DAY > NOW() AS b",
    "SELECT id AS a, amount AS b FROM known_columns ORDER BY id",
    "SELECT name AS a, raw AS b FROM known_columns ORDER BY id",
]


def _params(db: Database) -> dict[str, Any]:
    """What the engine hands the driver (SQLAlchemy's own connect arguments and ours), plus multi-statements."""
    _args, params = db.engine.dialect.create_connect_args(db.engine.url)
    params.update(init_command=NO_BACKSLASH_ESCAPES)
    params["client_flag"] = params.get("client_flag", 0) | CLIENT.MULTI_STATEMENTS
    return params


@pytest.fixture
def pair(db: Database) -> Iterator[tuple[Any, Any]]:
    stock = pymysql.connect(**_params(db))
    known = KnownColumnsConnection(**_params(db))
    try:
        for conn in (stock, known):
            with conn.cursor() as cur:
                cur.execute(TABLE)
                cur.execute("INSERT INTO known_columns VALUES " + ", ".join(ROWS))
        yield stock, known
    finally:
        stock.close()
        known.close()


def _read(conn: Any, sql: str) -> tuple[Any, Any]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.description, cur.fetchall()


def test_the_engine_connects_with_the_known_columns_connection(db: Database) -> None:
    raw = db.engine.raw_connection()
    try:
        assert isinstance(raw.dbapi_connection, KnownColumnsConnection)
    finally:
        raw.close()


def test_every_result_reads_as_pymysql_reads_it_the_first_time_and_after(pair: tuple[Any, Any]) -> None:
    stock, known = pair
    for _round in range(3):
        for sql in QUERIES:
            assert _read(known, sql) == _read(stock, sql), sql
    assert known.known_columns  # the rounds after the first were read from what it kept
    first = _read(stock, QUERIES[0])[1][0]
    assert first[2:5] == (pytest.approx(12.5), 0.1, 1) and first[7] == b"\x00\xff\x10"


def test_multi_statement_results_read_as_pymysql_reads_them(pair: tuple[Any, Any]) -> None:
    sql = "SELECT 1 AS a; SELECT 'x' AS a, 2 AS b; DO 1; SELECT JSON_OBJECT('k', 1) AS a"

    def every_result(conn: Any) -> list[Any]:
        out = []
        with conn.cursor() as cur:
            cur.execute(sql)
            while True:
                out.append((cur.description, cur.fetchall()))
                if not cur.nextset():
                    return out

    stock, known = pair
    for _round in range(2):
        assert every_result(known) == every_result(stock)


def test_a_connection_remembers_at_most_its_limit(pair: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    stock, known = pair
    monkeypatch.setattr(driver, "MAX_KNOWN", 3)
    known.known_columns.clear()
    for sql in QUERIES:
        assert _read(known, sql) == _read(stock, sql), sql
    assert len(known.known_columns) == 3
