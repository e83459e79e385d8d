"""The one classification of database errors, the 503 answers it leads to, and the backoff's bounds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain import dbfaults
from domain.dbfaults import (
    CONTENTION,
    DISCONNECT,
    NOT_READY,
    UNKNOWN_BATCH,
    UNREACHABLE,
    DatabaseUnavailable,
    RetryPolicy,
    classify,
    database_fault_response,
)


def mysql_error(cls: type[Exception], code: int, text: str, wrapper: type[DBAPIError] = OperationalError) -> DBAPIError:
    return wrapper("SELECT 1", {}, cls(code, text))


CASES: list[tuple[int, str, str]] = [
    (1213, "Deadlock found when trying to get lock; try restarting transaction", CONTENTION),
    (1205, "Lock wait timeout exceeded; try restarting transaction", CONTENTION),
    (1180, 'Got error 6 "No such device or address" during COMMIT', CONTENTION),
    (1317, "Query execution was interrupted", CONTENTION),
    (1047, "WSREP has not yet prepared node for application use", NOT_READY),
    (2006, "MySQL server has gone away", DISCONNECT),
    (2013, "Lost connection to MySQL server during query", DISCONNECT),
    (2055, "Lost connection to MySQL server at 'reading initial communication packet'", DISCONNECT),
    (4031, "The client was disconnected by the server because of inactivity", DISCONNECT),
    (1927, "Connection was killed", DISCONNECT),
    (1053, "Server shutdown in progress", DISCONNECT),
    (2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)", UNREACHABLE),
    (1040, "Too many connections", UNREACHABLE),
]


@pytest.mark.parametrize(("code", "text", "kind"), CASES, ids=[str(c[0]) for c in CASES])
def test_every_transient_mysql_code_is_classified(code: int, text: str, kind: str) -> None:
    fault = classify(mysql_error(pymysql.err.OperationalError, code, text))
    assert fault is not None and fault.kind == kind and fault.code == code
    assert not fault.outcome_unknown, "only a lost connection during COMMIT has an unknown outcome"


def test_galera_certification_failure_reported_as_deadlock_is_contention() -> None:
    exc = mysql_error(pymysql.err.OperationalError, 1213, "Deadlock: wsrep aborted transaction")
    fault = classify(exc)
    assert fault is not None and fault.kind == CONTENTION


@pytest.mark.parametrize(
    "orig",
    [
        pymysql.err.InterfaceError(0, ""),
        pymysql.err.InterfaceError("(0, '')"),
        pymysql.err.OperationalError("Already closed"),
    ],
    ids=["interface-0", "interface-text", "already-closed"],
)
def test_pymysql_closed_connection_errors_are_disconnects(orig: Exception) -> None:
    fault = classify(InterfaceError("COMMIT", {}, orig))
    assert fault is not None and fault.kind == DISCONNECT


def test_sqlite_locked_is_contention_and_other_sqlite_errors_are_bugs() -> None:
    locked = OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    fault = classify(locked)
    assert fault is not None and fault.kind == CONTENTION
    assert classify(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))) is None
    assert classify(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))) is None


def test_a_sqlite_file_that_cannot_be_opened_is_unreachable() -> None:
    gone = OperationalError(None, None, sqlite3.OperationalError("unable to open database file"))
    fault = classify(gone)
    assert fault is not None and fault.kind == UNREACHABLE


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, pymysql.err.IntegrityError(1062, "Duplicate entry")),
        ProgrammingError("SELEC", {}, pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax")),
        OperationalError("SELECT", {}, pymysql.err.OperationalError(1054, "Unknown column")),
        OperationalError("connect", {}, pymysql.err.OperationalError(1045, "Access denied")),
        ValueError("not from the database"),
        KeyError("x"),
    ],
    ids=["duplicate", "syntax", "unknown-column", "access-denied", "value-error", "key-error"],
)
def test_bugs_and_configuration_errors_are_not_database_faults(exc: Exception) -> None:
    assert classify(exc) is None
    assert database_fault_response(exc) is None


def test_a_pool_timeout_is_unreachable() -> None:
    fault = classify(PoolTimeout("QueuePool limit of size 5 overflow 5 reached"))
    assert fault is not None and fault.kind == UNREACHABLE


def test_lost_connection_during_commit_has_an_unknown_outcome() -> None:
    exc = mysql_error(pymysql.err.OperationalError, 2013, "Lost connection to MySQL server during query")
    setattr(exc, "lpg_during_commit", True)
    fault = classify(exc)
    assert fault is not None and fault.outcome_unknown
    answer = database_fault_response(exc)
    assert answer is not None and answer.status == 503 and answer.details["outcome"] == "unknown"
    assert "nothing" not in answer.message and "not applied" not in answer.message
    # Galera's refusal at COMMIT rolls back: retried like a deadlock, not an unknown outcome.
    refused = mysql_error(pymysql.err.OperationalError, 1180, "Got error 149 during COMMIT")
    setattr(refused, "lpg_during_commit", True)
    assert not classify(refused).outcome_unknown  # type: ignore[union-attr]


def test_the_answers() -> None:
    busy = database_fault_response(mysql_error(pymysql.err.OperationalError, 1213, "Deadlock"))
    down = database_fault_response(mysql_error(pymysql.err.OperationalError, 2003, "Can't connect"))
    assert busy is not None and down is not None
    status, code, message, retry_after = busy[:4]
    assert (status, code, retry_after) == (503, "service_unavailable", dbfaults.RETRY_AFTER_CONTENTION)
    assert "send the same request again as it is" in message
    assert down.retry_after == dbfaults.RETRY_AFTER_UNAVAILABLE and down.headers == {"Retry-After": "5"}
    assert down.details == {"retry_after": 5, "outcome": "not_applied", "reason": "unreachable (2003)"}
    fault = classify(mysql_error(pymysql.err.OperationalError, 2013, "Lost connection"))
    assert fault is not None
    batch = DatabaseUnavailable(fault, attempts=3, outcome_unknown=True, idempotent=True)
    answer = database_fault_response(batch)
    assert answer is not None and answer.message == UNKNOWN_BATCH
    assert UNKNOWN_BATCH == "the outcome is unknown; send the same batch again: it is idempotent"


def test_backoff_is_full_jitter_growing_and_capped() -> None:
    policy = RetryPolicy(attempts=6, base=0.02, cap=1.0)
    ceilings = [policy.ceiling(n) for n in range(1, 10)]
    assert ceilings[:6] == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32, 0.64])
    assert ceilings[6:] == [1.0, 1.0, 1.0], "capped"
    for n in range(1, 10):
        assert policy.backoff(n, rand=lambda: 0.0) == 0.0, "full jitter starts at zero"
        assert policy.backoff(n, rand=lambda: 0.999999) == pytest.approx(policy.ceiling(n), rel=1e-5)
    worst = sum(policy.ceiling(n) for n in range(1, policy.attempts))
    assert worst < policy.total, "the attempts fit in the time bound"


class Flaky:
    def __init__(self, faults: list[BaseException]) -> None:
        self.faults = faults
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.faults:
            raise self.faults.pop(0)
        return "done"


def _db(tmp_path: Path, **settings: Any) -> Any:
    from domain.db import Database
    from tests.conftest import test_settings

    return Database(test_settings(f"sqlite:///{tmp_path / 'unused.db'}", **settings))


def test_retrying_runs_again_after_transient_faults_and_gives_up_with_503(tmp_path: Path) -> None:
    db = _db(tmp_path, db_attempts=3)
    db.policy = RetryPolicy(attempts=3, base=0.001, cap=0.002)
    deadlock = mysql_error(pymysql.err.OperationalError, 1213, "Deadlock")
    work = Flaky([deadlock, deadlock])
    assert db.retrying(work) == "done" and work.calls == 3
    work = Flaky([deadlock, deadlock, deadlock, deadlock])
    with pytest.raises(DatabaseUnavailable) as info:
        db.retrying(work)
    assert work.calls == 3 and info.value.attempts == 3 and not info.value.outcome_unknown
    bug = Flaky([KeyError("bug")])
    with pytest.raises(KeyError):
        db.retrying(bug)
    assert bug.calls == 1, "a bug is not retried"


def test_an_unknown_outcome_is_retried_only_when_idempotent(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.policy = RetryPolicy(attempts=4, base=0.001, cap=0.002)

    def lost_commit() -> DBAPIError:
        exc = mysql_error(pymysql.err.OperationalError, 2013, "Lost connection")
        setattr(exc, "lpg_during_commit", True)
        return exc

    work = Flaky([lost_commit()])
    with pytest.raises(DatabaseUnavailable) as info:
        db.retrying(work)
    assert work.calls == 1 and info.value.outcome_unknown, "a REST create must not run twice"
    push = Flaky([lost_commit()])
    assert db.retrying(push, idempotent=True) == "done" and push.calls == 2
    # An unknown outcome stays unknown even if a later attempt fails differently.
    push = Flaky([lost_commit()] + [mysql_error(pymysql.err.OperationalError, 2003, "down")] * 5)
    with pytest.raises(DatabaseUnavailable) as info:
        db.retrying(push, idempotent=True)
    assert info.value.outcome_unknown and info.value.idempotent


def test_the_time_bound_stops_attempts_early(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.policy = RetryPolicy(attempts=100, base=0.05, cap=0.05, total=0.2)
    down = mysql_error(pymysql.err.OperationalError, 2003, "down")
    work = Flaky([down] * 100)
    with pytest.raises(DatabaseUnavailable):
        db.retrying(work)
    assert work.calls < 100


def test_an_error_once_commit_was_sent_says_the_outcome_is_unknown_and_a_failed_flush_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from domain.feed.models import Counter

    def fails(message: str) -> Any:
        def raise_(_connection: Any) -> None:
            raise sqlite3.OperationalError(message)

        return raise_

    # COMMIT sent and failed (the rollback after it fails too): the error that leaves the unit is the COMMIT's.
    db = _db(tmp_path)
    db.read(lambda s: s.execute(text("SELECT 1")))  # the first connection (its set-up rolls back once)
    monkeypatch.setattr(db.engine.dialect, "do_commit", fails("commit failed"))
    monkeypatch.setattr(db.engine.dialect, "do_rollback", fails("rollback failed"))
    with pytest.raises(DBAPIError, match="commit failed") as info, db.unit() as uow:
        uow.session.execute(text("SELECT 1"))
        uow.commit()
    assert getattr(info.value, "lpg_during_commit", False), info.value
    monkeypatch.undo()
    db.dispose()
    # A flush that fails inside session.commit(), before any COMMIT: the outcome is known (nothing written).
    db = _db(tmp_path)
    with pytest.raises(DBAPIError) as info, db.unit() as uow:
        uow.session.add(Counter(name="x", value=1))  # unused.db has no tables
        uow.commit()
    assert not getattr(info.value, "lpg_during_commit", False)
    db.dispose()
