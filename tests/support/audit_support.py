"""Helpers for the audit tests: write chained entries, and tamper with the log as root would.

Tampering drops the append-only triggers on a connection of its own (root on MariaDB, a raw sqlite3
connection on SQLite), changes rows, and re-creates the triggers from the migration, so later tests on the
shared MariaDB database find them in place again.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Connection, make_url

from domain.audit.models import AuditEntry
from domain.audit.services import audit
from domain.db import Database
from domain.ledger import audit_hash

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("at", "user_id", "device_id", "action", "entity_type", "entity_id", "context", "prev_hash", "hash")


def initial_migration() -> Any:
    spec = importlib.util.spec_from_file_location(
        "lpg_migration_0001", ROOT / "alembic" / "versions" / "0001_initial_schema.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_entries(db: Database, transactions: int, per_transaction: int = 1, actor: int | None = 1) -> None:
    """`transactions` committed units, each auditing `per_transaction` entries (no business rows needed)."""
    for t in range(transactions):

        def work(uow: Any, t: int = t) -> None:
            for n in range(per_transaction):
                audit(
                    uow.session,
                    actor,
                    f"device-{t % 3}",
                    "adjust",
                    "truck_stock",
                    1000 + t * per_transaction + n,
                    before={"full": n},
                    after={"full": n + 1, "note": "Ünïcödé 金龙 ✓"},
                    batch=f"batch-{t}",
                )

        db.run(work)


def entries(db: Database) -> list[Any]:
    return db.read(lambda s: list(s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()))


@contextmanager
def as_root(db: Database) -> Iterator[Connection]:
    """A connection with the audit log's triggers dropped, as a root user (or the file's owner) could."""
    guards = initial_migration()
    sqlite = db.dialect == "sqlite"
    if sqlite:
        engine = create_engine(db.engine.url)  # no app pragmas, no BEGIN IMMEDIATE recipe
    else:
        engine = create_engine(make_url(str(db.engine.url.render_as_string(hide_password=False))))
    try:
        with engine.begin() as conn:
            for name in guards.AUDIT_GUARD_NAMES:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            with engine.begin() as conn:
                for statement in guards.AUDIT_GUARDS[sqlite]:
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def row_of(conn: Connection, entry_id: int) -> dict[str, Any]:
    row = conn.execute(select(AuditEntry.__table__).where(AuditEntry.id == entry_id)).mappings().one()
    return dict(row)


def rehash(conn: Connection, entry_id: int, prev_hash: str) -> str:
    """Recompute an entry's hash after tampering (as a careful forger would) and store it."""
    row = row_of(conn, entry_id)
    digest = audit_hash(
        entry_id,
        row["at"],
        row["user_id"],
        row["device_id"],
        row["action"],
        row["entity_type"],
        row["entity_id"],
        row["context"],
        prev_hash,
    )
    table = AuditEntry.__table__
    conn.execute(table.update().where(table.c.id == entry_id).values(prev_hash=prev_hash, hash=digest))
    return digest


def set_head(conn: Connection, last_id: int, head: str | None) -> None:
    conn.execute(text("UPDATE counters SET value = :v, head = :h WHERE name = 'audit'"), {"v": last_id, "h": head})


Tamper = Callable[[Connection, int], None]


def raw_sqlite(db: Database) -> sqlite3.Connection:
    """A plain sqlite3 connection: none of the application's pragmas (recursive_triggers is OFF)."""
    path = db.engine.url.database
    assert path
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA recursive_triggers").fetchone()[0] == 0
    return conn
