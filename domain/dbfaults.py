"""What a database error means, what to do about it, and what the client is told.

One classification for every unit of work (REST, push, replay, pull, the CLI, authentication reads, the mail
sender): `classify(exc)` says whether an exception is a database fault that is not a bug, and of which kind.

- `contention`: deadlock victim (1213), lock wait timeout (1205), a cluster's certification failure or
  brute-force abort (1213, 1205, 1180 "Got error ... during COMMIT"), an interrupted query (1317), SQLite's
  "database is locked". The transaction was rolled back: run the whole unit again.
- `not_ready`: a cluster node that may not serve yet (1047 "WSREP has not yet prepared node"). The connection
  is dropped and the unit runs again on a fresh one.
- `disconnect`: the connection was lost or killed (2006, 2013, 2014, 2045, 2055, 4031, 1927, 1053, PyMySQL's
  closed-connection errors). Before COMMIT the server rolls the transaction back, so the unit runs again on a
  fresh connection; DURING COMMIT the outcome is unknown (see `during_commit`).
- `unreachable`: no connection could be opened (2002, 2003, 1040 too many connections, 1045/1049 at connect
  time are NOT faults: they are configuration), SQLite's "unable to open database file", or the pool had no
  free connection in time.

Everything else (a constraint the code did not expect, a syntax error) is a bug and stays a 500.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

CONTENTION, NOT_READY, DISCONNECT, UNREACHABLE = "contention", "not_ready", "disconnect", "unreachable"

# MariaDB/MySQL error numbers (server errors < 2000, client errors 2000-2999, 4031 a server-side idle close).
MYSQL_CODES: dict[int, str] = {
    1213: CONTENTION,  # deadlock victim; also Galera's certification failure / brute-force abort
    1205: CONTENTION,  # lock wait timeout; also a Galera brute-force abort while waiting
    1180: CONTENTION,  # "Got error N during COMMIT": Galera refused the write set at COMMIT (rolled back)
    1317: CONTENTION,  # query execution was interrupted (KILL QUERY, max_statement_time)
    1047: NOT_READY,  # WSREP has not yet prepared node for application use
    1927: DISCONNECT,  # connection was killed
    1053: DISCONNECT,  # server shutdown in progress
    2006: DISCONNECT,  # MySQL server has gone away
    2013: DISCONNECT,  # lost connection to MySQL server during query
    2014: DISCONNECT,  # commands out of sync (the connection is unusable)
    2045: DISCONNECT,
    2055: DISCONNECT,  # lost connection at '...', system error
    4031: DISCONNECT,  # the client was disconnected by the server because of inactivity
    2002: UNREACHABLE,  # can't connect through socket
    2003: UNREACHABLE,  # can't connect to server
    1040: UNREACHABLE,  # too many connections
}
SQLITE_CONTENTION = ("database is locked", "database table is locked", "database schema is locked")
SQLITE_UNREACHABLE = ("unable to open database file",)  # the file or its folder is not there (a lost mount)
RETRY_AFTER_CONTENTION = 1  # seconds: the attempts ran out against other writers
RETRY_AFTER_UNAVAILABLE = 5  # seconds: the database does not answer (a restart takes a few seconds)

_DURING_COMMIT = "lpg_during_commit"
_state = threading.local()


@dataclass(frozen=True)
class Fault:
    kind: str
    code: int | None
    reason: str
    during_commit: bool = False

    @property
    def outcome_unknown(self) -> bool:
        """The connection was lost while COMMIT was on its way: the transaction may or may not have committed."""
        return self.during_commit and self.kind == DISCONNECT

    @property
    def drop_connection(self) -> bool:
        return self.kind in (DISCONNECT, NOT_READY, UNREACHABLE)


def mysql_code(orig: BaseException | None) -> int | None:
    args = getattr(orig, "args", None)
    if not args:
        return None
    first = args[0]
    if isinstance(first, BaseException):  # PyMySQL wraps some errors once more
        return mysql_code(first)
    return first if isinstance(first, int) else None


# A CHECK constraint refused a row: MariaDB's ER_CONSTRAINT_FAILED and MySQL's ER_CHECK_CONSTRAINT_VIOLATED,
# which PyMySQL raises as OperationalError (SQLite's is an IntegrityError).
MYSQL_CHECK_FAILED = (4025, 3819)


def refuses_data(exc: BaseException) -> bool:
    """The database refused the data written (a unique key, a CHECK, a value out of range): not a fault, and
    not a bug of the statement; the change that wrote it is what to refuse."""
    if not isinstance(exc, DBAPIError) or classify(exc) is not None:
        return False
    return isinstance(exc, (IntegrityError, DataError)) or mysql_code(exc.orig) in MYSQL_CHECK_FAILED


def classify(exc: BaseException) -> Fault | None:
    """The fault `exc` stands for, or None when it is not a database fault (a bug, or not from the database)."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.fault
    if isinstance(exc, PoolTimeout):
        return Fault(UNREACHABLE, None, "no free database connection in time")
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    during_commit = bool(getattr(exc, _DURING_COMMIT, False))
    text = str(orig)
    module = type(orig).__module__ if orig is not None else ""
    if module.startswith("sqlite3"):
        lowered = text.lower()
        if any(marker in lowered for marker in SQLITE_CONTENTION):
            return Fault(CONTENTION, None, text[:200], during_commit)
        if any(marker in lowered for marker in SQLITE_UNREACHABLE):
            return Fault(UNREACHABLE, None, text[:200], during_commit)
        return None
    code = mysql_code(orig)
    kind = MYSQL_CODES.get(code) if code is not None else None
    if kind is None and (exc.connection_invalidated or _closed_connection(orig, text)):
        kind = DISCONNECT
    if kind is None:
        return None
    return Fault(kind, code, text[:200], during_commit)


def _closed_connection(orig: BaseException | None, text: str) -> bool:
    """PyMySQL's errors for a connection that is already gone: `(0, '')`, 'Already closed', a broken pipe."""
    if orig is None:
        return False
    name = type(orig).__name__
    if name not in ("InterfaceError", "OperationalError", "InternalError"):
        return False
    lowered = text.lower()
    return text.startswith("(0, ") or "already closed" in lowered or "connection was killed" in lowered


# -- what a client sees ------------------------------------------------------------------------------------


class DatabaseUnavailable(Exception):
    """A unit of work could not be done because of the database (not a bug): the edge answers 503.

    `outcome_unknown`: some attempt lost its connection during COMMIT, so the change may be durable.
    `idempotent`: the request may be sent again as it is whatever happened (a push)."""

    def __init__(self, fault: Fault, *, attempts: int, outcome_unknown: bool, idempotent: bool) -> None:
        super().__init__(f"database {fault.kind} after {attempts} attempt(s): {fault.reason}")
        self.fault = fault
        self.attempts = attempts
        self.outcome_unknown = outcome_unknown
        self.idempotent = idempotent


class FaultAnswer(NamedTuple):
    status: int
    code: str
    message: str
    retry_after: int
    outcome: str = "not_applied"
    reason: str = ""

    @property
    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"retry_after": self.retry_after, "outcome": self.outcome}
        if self.reason:
            details["reason"] = self.reason
        return details

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


UNKNOWN_BATCH = "the outcome is unknown; send the same batch again: it is idempotent"
UNKNOWN_REQUEST = (
    "the connection to the database was lost during COMMIT, so the outcome is unknown; "
    "read the record to see whether the change was made before sending it again"
)
NOT_APPLIED = "the request was not applied; send the same request again as it is after Retry-After seconds"


def database_fault_response(exc: BaseException) -> FaultAnswer | None:
    """The 503 for a database fault, or None when `exc` is not one (then it is a bug: 500).

    One mapping for `/api/v1` and `/couchdb`: `(status, code, message, retry_after)` plus `details`."""
    fault = classify(exc)
    if fault is None:
        return None
    unknown = exc.outcome_unknown if isinstance(exc, DatabaseUnavailable) else fault.outcome_unknown
    idempotent = isinstance(exc, DatabaseUnavailable) and exc.idempotent
    retry_after = RETRY_AFTER_CONTENTION if fault.kind == CONTENTION else RETRY_AFTER_UNAVAILABLE
    reason = f"{fault.kind}" + (f" ({fault.code})" if fault.code is not None else "")
    if unknown:
        message = UNKNOWN_BATCH if idempotent else UNKNOWN_REQUEST
        return FaultAnswer(503, "service_unavailable", message, retry_after, "unknown", reason)
    if fault.kind == CONTENTION:
        lead = "the database was too busy to finish this request in time"
    else:
        lead = "the database is unavailable"
    return FaultAnswer(503, "service_unavailable", f"{lead}; {NOT_APPLIED}", retry_after, "not_applied", reason)


# -- retries -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with full-jitter exponential backoff: attempt n waits U(0, min(cap, base * 2**(n-1)))."""

    attempts: int = 6
    base: float = 0.02
    cap: float = 1.0
    total: float = 8.0  # seconds: no new attempt starts after this much time since the first

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The pause after failed attempt `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return ceiling * rand()

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** (attempt - 1)))


# -- marking errors raised by COMMIT -------------------------------------------------------------------------


def install(engine: Engine) -> None:
    """Engine hooks: remember when a COMMIT is on its way, so an error it raises is known to be a COMMIT's;
    and drop a connection whose error means it is unusable, so the pool hands out fresh ones (this is
    what makes a pool pre-ping unnecessary)."""
    if event.contains(engine, "handle_error", _on_error):
        return
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_end)
    event.listen(engine, "begin", _on_end)
    event.listen(engine, "handle_error", _on_error)


def _on_commit(conn: Any) -> None:
    _state.committing = conn
    _state.sent = getattr(_state, "sent", 0) + 1


def commits_sent() -> int:
    """How many COMMITs this thread has sent: a unit compares it around its commit, so that an error raised
    after its COMMIT went out is known to be one whose outcome is unknown, whatever raised it."""
    return int(getattr(_state, "sent", 0))


def mark_during_commit(exc: BaseException) -> None:
    setattr(exc, _DURING_COMMIT, True)


def _on_end(conn: Any) -> None:
    if getattr(_state, "committing", None) is conn:
        _state.committing = None


def _on_error(context: Any) -> None:
    exc = context.sqlalchemy_exception
    committing = getattr(_state, "committing", None)
    if committing is not None and context.statement is None and committing is context.connection:
        _state.committing = None
        if exc is not None:
            setattr(exc, _DURING_COMMIT, True)
    if exc is not None and not context.is_disconnect and context.is_pre_ping is False:
        fault = classify(exc)
        if fault is not None and fault.drop_connection:
            context.is_disconnect = True
