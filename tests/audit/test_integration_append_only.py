"""The database itself refuses to change or remove audit entries, whoever asks and however they connect."""

from __future__ import annotations

import sqlite3
from typing import Any

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from domain.db import Database
from tests.conftest import ENGINE, MYSQL_URL
from tests.support.audit_support import entries, raw_sqlite, write_entries

INSERT_COLUMNS = "(id, at, user_id, device_id, action, entity_type, entity_id, context, prev_hash, hash)"
FORGED = "(1, '2026-01-01 00:00:00.000000', 99, 'forger', 'create', 'user', 1, '{}', 'x', 'y')"
REFUSED_BOTH = {
    "update": "UPDATE audit_log SET context = '{\"forged\":true}' WHERE id = 1",
    "update_all": "UPDATE audit_log SET action = 'forged'",
    "delete": "DELETE FROM audit_log WHERE id = 1",
    "delete_all": "DELETE FROM audit_log",
}
REFUSED_SQLITE = {
    **REFUSED_BOTH,
    "insert_or_replace": f"INSERT OR REPLACE INTO audit_log {INSERT_COLUMNS} VALUES {FORGED}",
    "replace": f"REPLACE INTO audit_log {INSERT_COLUMNS} VALUES {FORGED}",
    "upsert": f"INSERT INTO audit_log {INSERT_COLUMNS} VALUES {FORGED} ON CONFLICT(id) DO UPDATE SET action = 'forged'",
    "update_or_replace": "UPDATE OR REPLACE audit_log SET id = 1 WHERE id = 2",
}
REFUSED_MYSQL = {
    **REFUSED_BOTH,
    "replace": f"REPLACE INTO audit_log {INSERT_COLUMNS} VALUES {FORGED}",
    "on_duplicate_key_update": f"INSERT INTO audit_log {INSERT_COLUMNS} VALUES {FORGED} "
    "ON DUPLICATE KEY UPDATE action = 'forged'",
}


def snapshot(db: Database) -> list[tuple[Any, ...]]:
    return [(e.id, e.action, e.context, e.prev_hash, e.hash) for e in entries(db)]


def statements(db: Database) -> dict[str, str]:
    return REFUSED_SQLITE if db.dialect == "sqlite" else REFUSED_MYSQL


@pytest.fixture
def logged(db: Database) -> Database:
    write_entries(db, 3, per_transaction=2)
    return db


def test_every_statement_is_refused_through_the_application_engine(logged: Database) -> None:
    before = snapshot(logged)
    for name, sql in statements(logged).items():
        with pytest.raises(DBAPIError, match="append-only"), logged.engine.begin() as conn:
            conn.exec_driver_sql(sql)
        assert snapshot(logged) == before, name


# The statements this run's engine must refuse (chosen at collection: nothing is skipped on either engine).
REFUSED = REFUSED_SQLITE if ENGINE == "sqlite" else REFUSED_MYSQL


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_raw_connection_without_the_apps_settings_is_refused(db: Database, name: str) -> None:
    """SQLite: a plain sqlite3 connection (recursive_triggers OFF); MariaDB: plain PyMySQL as root."""
    write_entries(db, 3, per_transaction=2)
    before = snapshot(db)
    if db.dialect == "sqlite":
        lite = raw_sqlite(db)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                lite.execute(REFUSED[name])
        finally:
            lite.close()
    else:
        url = make_url(MYSQL_URL)
        maria = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, database=url.database)
        try:
            with pytest.raises(pymysql.err.OperationalError, match="append-only"), maria.cursor() as cursor:
                cursor.execute(REFUSED[name])
            maria.rollback()
        finally:
            maria.close()
    assert snapshot(db) == before


def test_appending_still_works_and_a_refused_change_rolls_back_its_whole_transaction(logged: Database) -> None:
    """A unit that tries to rewrite the log fails as a whole: its own business effect does not survive."""
    before = snapshot(logged)
    with pytest.raises(DBAPIError, match="append-only"), logged.engine.begin() as conn:
        conn.execute(text("UPDATE counters SET value = value WHERE name = 'feed'"))
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id = 6")
    assert snapshot(logged) == before
    write_entries(logged, 1)
    assert [e.id for e in entries(logged)] == list(range(1, 8))
