"""deploy/mysql-grants.sql: the application's user may read and append to the audit log, nothing more."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pymysql
import pytest
from sqlalchemy.engine import make_url

from domain.audit.verify import verify_chain
from domain.db import Database
from sync.models import metadata
from tests.conftest import MYSQL_URL
from tests.support.audit_support import ROOT, entries, write_entries

GRANTS = ROOT / "deploy" / "mysql-grants.sql"
GRANT = re.compile(r"^GRANT (?P<privileges>[A-Z, ]+) ON `lpg`\.`(?P<table>\w+)` TO 'lpg'@'%';$", re.MULTILINE)
TEST_USER, TEST_PASSWORD = "lpg_audit_app", "audit-app-test-pw"


def granted() -> dict[str, set[str]]:
    return {m["table"]: {p.strip() for p in m["privileges"].split(",")} for m in GRANT.finditer(GRANTS.read_text())}


def test_the_grants_cover_every_table_and_keep_the_audit_log_append_only() -> None:
    grants = granted()
    assert grants["audit_log"] == {"SELECT", "INSERT"}
    assert set(metadata.tables) <= set(grants), "a table the models define has no grant for the app user"
    for table, privileges in grants.items():
        assert not privileges & {"ALL", "ALL PRIVILEGES", "DROP", "ALTER", "TRIGGER", "CREATE", "INDEX"}, table
    # no database-wide grant for the app user: MariaDB privileges only add up, it would reopen audit_log
    assert not re.search(r"ON `lpg`\.\* TO 'lpg'@", GRANTS.read_text())


@pytest.fixture
def app_user(db: Database) -> Iterator[pymysql.Connection]:  # type: ignore[type-arg]
    """The documented grants, applied to this test database for a throwaway user (dropped afterwards)."""
    url = make_url(MYSQL_URL)
    sql = GRANTS.read_text().replace("`lpg`.", f"`{url.database}`.").replace("'lpg'@'%'", f"'{TEST_USER}'@'%'")
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", sql).split(";") if s.strip()]
    statements = [s for s in statements if "lpg_owner" not in s]  # the owner account is not under test
    statements[0] = f"CREATE USER '{TEST_USER}'@'%' IDENTIFIED BY '{TEST_PASSWORD}'"
    root = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, autocommit=True)
    with root.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{TEST_USER}'@'%'")
        for statement in statements:
            cursor.execute(statement)
    connection = pymysql.connect(
        host=url.host, port=url.port or 3306, user=TEST_USER, password=TEST_PASSWORD, database=url.database
    )
    try:
        yield connection
    finally:
        connection.close()
        with root.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{TEST_USER}'@'%'")
        root.close()


@pytest.mark.mysql_only
def test_the_app_user_can_read_and_append_but_not_update_delete_truncate_or_drop(
    db: Database,
    app_user: pymysql.Connection,  # type: ignore[type-arg]
) -> None:
    write_entries(db, 2, per_transaction=2)
    before = [(e.id, e.hash) for e in entries(db)]
    denied = pymysql.err.OperationalError, pymysql.err.ProgrammingError
    with app_user.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM audit_log")
        assert cursor.fetchone() == (4,)
        cursor.execute(
            "INSERT INTO audit_log (id, at, action, entity_type, context, prev_hash, hash) "
            "VALUES (5, NOW(6), 'login', 'user', '{}', %s, %s)",
            (before[-1][1], "0" * 64),
        )
        app_user.rollback()  # only proving the INSERT privilege; the application writes entries itself
        for statement, code in [
            ("UPDATE audit_log SET action = 'forged' WHERE id = 1", 1142),
            ("DELETE FROM audit_log WHERE id = 1", 1142),
            ("TRUNCATE TABLE audit_log", 1142),
            ("DROP TABLE audit_log", 1142),
            ("ALTER TABLE audit_log ADD COLUMN forged INT", 1142),
            ("DROP TRIGGER audit_log_no_update", 1142),
            ("REPLACE INTO audit_log (id, at, action, entity_type, context, prev_hash, hash) "
             "VALUES (1, NOW(6), 'x', 'user', '{}', 'x', 'x')", 1142),
        ]:  # fmt: skip
            with pytest.raises(denied) as refused:
                cursor.execute(statement)
            assert refused.value.args[0] in {code, 1227, 1044}, (statement, refused.value.args)
        # what the application needs elsewhere still works
        cursor.execute("UPDATE counters SET value = value WHERE name = 'feed'")
        cursor.execute("SELECT version_num FROM alembic_version")
        app_user.rollback()
    assert [(e.id, e.hash) for e in entries(db)] == before


@pytest.mark.mysql_only
def test_the_application_runs_its_units_of_work_as_that_user(
    db: Database,
    app_user: pymysql.Connection,  # type: ignore[type-arg]
) -> None:
    """Appending through the ledger (audit insert, counters update) needs nothing beyond the grants."""
    url = make_url(MYSQL_URL).set(username=TEST_USER, password=TEST_PASSWORD)
    app_db = Database(db.settings.with_(database_url=url.render_as_string(hide_password=False)))
    try:
        write_entries(app_db, 3, per_transaction=2)
        assert verify_chain(app_db).as_dict() == {"ok": True, "checked": 6, "first_broken": None}
    finally:
        app_db.dispose()
