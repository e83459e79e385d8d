"""Statements run on the driver's cursor (`domain.db.driver_rows`, `plain_rows`) behave as any other
statement: the same rows as `session.execute`, errors wrapped as SQLAlchemy's `DBAPIError`, listeners
called, and a connection the server dropped invalidated, so that the pool never hands it out again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from domain.accounts.models import User
from domain.db import Database, driver_rows, plain_rows


def test_plain_rows_are_the_rows_session_execute_reads(demo: Database) -> None:
    users = User.__table__.c
    stmt = select(users.id, users.username, users.role).where(users.username.in_(["admin", "driver1", "nobody"]))
    with demo.session() as session:
        expected = sorted(tuple(r) for r in session.execute(stmt, {}))
        assert len(expected) == 2
        assert sorted(plain_rows(session, stmt)) == expected
        assert plain_rows(session, select(users.id).where(users.username.in_([]))) == []


def test_a_failing_statement_is_a_wrapped_error_and_the_listeners_saw_it(demo: Database) -> None:
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(demo.engine, "before_cursor_execute", listen)
    try:
        with demo.session() as session:
            conn = session.connection()
            assert driver_rows(conn, "SELECT 1 + 1") == [(2,)]
            with pytest.raises(DBAPIError) as caught:
                driver_rows(conn, "SELECT * FROM no_such_table")
            assert "no_such_table" in str(caught.value.orig)
    finally:
        event.remove(demo.engine, "before_cursor_execute", listen)
    # (SQLite's session starts with the BEGIN IMMEDIATE the engine sends for a write unit)
    assert [s for s in seen if not s.startswith("BEGIN")] == ["SELECT 1 + 1", "SELECT * FROM no_such_table"]


@pytest.mark.mysql_only  # SQLite has no server to drop a connection
def test_a_connection_the_server_dropped_is_invalidated(demo: Database) -> None:
    with demo.session() as session:
        conn = session.connection()
        (own_id,) = driver_rows(conn, "SELECT CONNECTION_ID()")[0]
        with demo.engine.connect() as other:
            other.execute(text(f"KILL CONNECTION {int(own_id)}"))
        with pytest.raises(DBAPIError) as caught:
            driver_rows(conn, "SELECT 1")
        assert caught.value.connection_invalidated
        assert conn.invalidated
    # The pool hands out a working connection next.
    with demo.session() as session:
        assert plain_rows(session, select(User.__table__.c.id).limit(1))


@pytest.mark.mysql_only  # a compound statement with results of its own is MariaDB's
def test_an_error_after_the_first_result_is_a_wrapped_error_of_the_statement(demo: Database) -> None:
    """A compound statement answers its SELECT first; a later failure (here a SIGNAL, in production a deadlock or
    a Galera certification failure at a folded COMMIT) arrives with the next result. It is the statement's error,
    wrapped like any other, and the connection still serves: it never escapes raw from the cursor's close."""
    with demo.session() as session:
        conn = session.connection()
        compound = "BEGIN NOT ATOMIC SELECT 7; SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'late failure'; END"
        with pytest.raises(DBAPIError) as caught:
            driver_rows(conn, compound)
        assert "late failure" in str(caught.value.orig)
        assert not caught.value.connection_invalidated
        assert driver_rows(conn, "BEGIN NOT ATOMIC SELECT 8; SELECT 9; END") == [(8,)]
        assert driver_rows(conn, "SELECT 1 + 1") == [(2,)]
