"""The raw floor of a batch: the exact rows a push of 500 changes writes, written again by the bare driver.

Our reconciler runs the batch in this process on the benchmark's database with every statement it sends
recorded (a SQLAlchemy `before_cursor_execute` hook), and its unit is rolled back instead of committed,
after the ledger's feed and audit rows were written. The recorded writes (every INSERT, UPDATE and DELETE,
multi-row ones as they were sent; no read, no lock, no savepoint) are then sent again on a bare DB-API
connection (PyMySQL / sqlite3) in one transaction and committed, and only that is timed: what it costs the
database and the driver to take exactly those rows, with no Python of ours around it. Foreign key checks are
off for the replay (auto-increment ids are not rolled back, so a replayed row may name an id the rolled-back
run was given), which only makes the floor faster.

This is the floor the issue asks for when a target is called out of reach: the same rows, the fewest round
trips (each recorded statement once; the reconciler already writes each table's rows of a batch with one
multi-row statement).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

# Writes, including the ledger's compound statement on MariaDB (`BEGIN NOT ATOMIC ...; END`: the writes
# under the late lock in one round trip; `statement.lstrip()[:7]` of it is "BEGIN N").
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN N")


def replay_floor_rate(
    url: str, secret: str, make: Callable[[str, int], dict[str, Any]], batch: int, batches: int, user_id: int = 2
) -> tuple[float, float]:
    """(changes/s of the bare replay, changes/s of our reconciler in this process while recorded, for the log)
    over `batches` batches of `batch` changes made by `make`."""
    from sqlalchemy import event

    from domain import db as dbmod
    from domain.accounts.models import User
    from domain.accounts.policy import Actor
    from domain.ledger import write_ledger
    from domain.settings import Settings
    from reconcile.batch import apply_batch
    from reconcile.envelope import parse_envelope

    database = dbmod.Database(Settings.from_env({"LPG_DATABASE_URL": url, "LPG_SECRET_KEY": secret}))
    recorded: list[tuple[str, Any, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip()[:7].upper().startswith(WRITES):
            recorded.append((statement, parameters, executemany))

    def commit_then_undo(self: Any) -> None:  # the unit's ledger rows are written, then nothing is kept
        write_ledger(self.session)
        self.session.rollback()
        self.committed = True

    actor = database.read(lambda s: s.get(User, user_id))
    pusher = Actor(actor.id, actor.username, actor.role)
    replay_seconds = ours_seconds = 0.0
    sqlite = database.dialect == "sqlite"
    original = dbmod.UnitOfWork.commit
    event.listen(database.engine, "before_cursor_execute", record)
    try:
        for b in range(batches):
            device = f"floor-replay-{time.time_ns()}"
            changes = [make(device, b * batch + k) for k in range(batch)]
            envelope = parse_envelope(orjson.loads(orjson.dumps({"device_id": device, "changes": changes})))
            recorded.clear()
            dbmod.UnitOfWork.commit = commit_then_undo  # type: ignore[method-assign]
            try:
                started = time.perf_counter()
                response = apply_batch(database, pusher, envelope)
                ours_seconds += time.perf_counter() - started
            finally:
                dbmod.UnitOfWork.commit = original  # type: ignore[method-assign]
            bad = [r for r in response["results"] if r["status"] != "applied"]
            if bad:
                raise RuntimeError(f"replay floor: a change was not applied: {bad[0]}")
            writes = list(recorded)
            raw = database.engine.raw_connection()
            try:
                cur = raw.cursor()
                if sqlite:
                    cur.execute("PRAGMA foreign_keys = OFF")
                    cur.execute("BEGIN IMMEDIATE")
                else:
                    cur.execute("SET SESSION foreign_key_checks = 0")
                started = time.perf_counter()
                for statement, parameters, many in writes:
                    if many:
                        cur.executemany(statement, parameters)
                    else:  # a statement sent without parameters (the compound one) is not %-formatted
                        cur.execute(statement, parameters or None)
                    if cur.description is not None:  # INSERT ... RETURNING: read what it answers
                        cur.fetchall()
                raw.commit()
                replay_seconds += time.perf_counter() - started
                if not sqlite:
                    cur.execute("SET SESSION foreign_key_checks = 1")
                else:
                    cur.execute("PRAGMA foreign_keys = ON")
            finally:
                raw.close()
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
        dbmod.UnitOfWork.commit = original  # type: ignore[method-assign]
        database.dispose()
    changes_total = batches * batch
    return changes_total / replay_seconds, changes_total / ours_seconds
