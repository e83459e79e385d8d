"""Engines, sessions and the unit of work: the only place in the code base that commits.

MariaDB/MySQL runs at READ COMMITTED. Every decision that protects stock or money is taken on rows read with
`SELECT ... FOR UPDATE` (which always read the latest committed version, whatever the level), so REPEATABLE
READ buys nothing there, while its gap and next-key locks make concurrent inserts (new site-stock rows,
idempotency keys, feed rows) deadlock far more often. The change feed does not rely on a snapshot either:
a pull reads the committed feed counter first and then only rows at or below it (see `domain.feed`).

On a Galera cluster every connection runs with `wsrep_sync_wait` (1 by default, `LPG_DB_SYNC_WAIT`): a read
waits until this node has applied every write set the cluster committed before it, so a tablet that pushed
through one node and pulls through another sees its own changes (read-your-writes). Writes need no such
wait for correctness (certification refuses a write based on a stale read, and the unit runs again), but
the same wait makes those refusals rarer.

SQLite runs in WAL mode with `foreign_keys=ON`, a busy timeout, and SQLAlchemy's documented recipe that
takes over `BEGIN`: write transactions issue `BEGIN IMMEDIATE` (SQLite has no `SELECT ... FOR UPDATE`, so
without it two writers read the same stock and one update is lost); read-only units issue a plain `BEGIN`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pymysql.constants import SERVER_STATUS
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from domain import dbfaults, metrics
from domain.dbfaults import DatabaseUnavailable, Fault, RetryPolicy
from domain.driver import KnownColumnsConnection
from domain.settings import Settings

if TYPE_CHECKING:
    from domain.ledger import UnitState

log = logging.getLogger("lpg.db")
T = TypeVar("T")

READONLY = "lpg_readonly"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MYSQL_CONNECT_TIMEOUT = 5  # seconds: an unreachable database answers 503 soon, not after the OS's minutes


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    if url.get_backend_name() in {"mysql", "mariadb"}:
        query = dict(url.query)
        query.setdefault("charset", "utf8mb4")
        query.setdefault("connect_timeout", str(MYSQL_CONNECT_TIMEOUT))
        url = url.set(query=query)
        engine = _mysql_engine(url, settings)
        _install_sync_wait(engine, settings.db_sync_wait)
        return engine
    raise ValueError(f"unsupported database: {url.get_backend_name()}")


def private_sqlite_file(database_url: str) -> None:
    """Create a SQLite database file readable by its owner only (0600) before SQLite would create it with
    the umask's 0644: it holds password hashes. SQLite gives its -wal and -shm files the database file's
    permissions, so they are 0600 too. An existing file is left as it is."""
    url = make_url(database_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass  # an existing file is left as it is; a missing folder is SQLite's to report (a 503, not a crash)


def _mysql_engine(url: Any, settings: Settings) -> Engine:
    # No pool pre-ping (a round trip per checkout): a pooled connection found dead raises a disconnect
    # error on its first statement; SQLAlchemy then invalidates it and every older pooled connection
    # (see `dbfaults.install`), and `Database.run` runs the unit again on a fresh connection.
    engine = create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_recycle=1800,
        # No ROLLBACK when a connection goes back to the pool (a round trip after every commit): every
        # unit of work ends its transaction itself (commit, or rollback on leaving the block), and a
        # SQLAlchemy Connection closed inside a transaction rolls it back before it is returned.
        pool_reset_on_return=None,
        # NO_BACKSLASH_ESCAPES: the server reads a backslash in a quoted string as a backslash, so PyMySQL
        # quotes a string by doubling its quotes (one `str.replace`) instead of escaping it character by
        # character (`str.translate`, a quarter of a batch's CPU: documents and audit contexts are long
        # JSON). SQLAlchemy reads the mode at connect and renders its own literals to match.
        connect_args={"init_command": NO_BACKSLASH_ESCAPES},
    )
    if engine.dialect.driver == "pymysql":

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            # PyMySQL's connection, with column metadata parsed once per connection (`domain.driver`).
            return KnownColumnsConnection(*cargs, **cparams)

    return engine


# Set on a PyMySQL connection whose transaction was committed by the unit's last statement
# (`domain.ledger.LockedWrites.send`); read and cleared by the next COMMIT or ROLLBACK the engine sends.
_COMMITTED = "_lpg_committed_in_statement"


def committed_in_statement(dbapi_connection: Any) -> None:
    setattr(dbapi_connection, _COMMITTED, True)


def _take_mark(dbapi_connection: Any) -> tuple[Any, bool]:
    """The driver's connection under `dbapi_connection` (SQLAlchemy passes the pool's proxy, which reads
    attributes through to it but would keep one set on it for itself) and whether it carried the mark,
    which is cleared."""
    raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
    marked = getattr(raw, _COMMITTED, False)
    if marked:
        setattr(raw, _COMMITTED, False)
    return raw, marked


def skip_ended_commit(engine: Engine) -> None:
    """MariaDB: the unit's COMMIT sends nothing when its last statement already committed the transaction,
    which takes both the mark that statement left and the server's own word that no transaction is open
    (the status of its last answer, `SERVER_STATUS_IN_TRANS`). Anything else commits as usual."""
    dialect = engine.dialect
    if dialect.name != "mysql" or "do_commit" in vars(dialect):
        return
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        raw, marked = _take_mark(dbapi_connection)
        if marked and not raw.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
            return
        commit(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        _take_mark(dbapi_connection)
        rollback(dbapi_connection)

    @event.listens_for(engine, "checkin")
    def _forget(dbapi_connection: Any, _record: Any) -> None:
        """The mark is the unit's: never handed on with the connection to the next one."""
        if dbapi_connection is not None:
            _take_mark(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


# -- statements on the driver's cursor ------------------------------------------------------------------

# (statement, dialect class, MariaDB?) -> the statement compiled once for that dialect
_COMPILED: dict[tuple[Any, type, bool], Any] = {}


def driver_rows(
    conn: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """One SQL text run on the connection's driver cursor; its rows as plain tuples (none for a statement
    without a result). This is `exec_driver_sql` without its per-call machinery (an execution context,
    result metadata, a result object): on PyMySQL about 100 us less CPU per statement, which a 1-change push
    pays on each of its few statements in every request. What the database answers is handled as for any statement:
    `before_cursor_execute` listeners see it, and an error goes through SQLAlchemy's own handling (the
    engine's `handle_error` hooks run, the error is wrapped as a `DBAPIError`, a lost connection is
    invalidated so that the pool never hands it out again). Values are passed to the driver as they are, so
    only for statements whose parameters and columns need no conversion (strings, integers, NULL)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
        if params is None:
            cursor.execute(sql)  # no % formatting of the text by PyMySQL; sqlite3 takes no None
        else:
            cursor.execute(sql, params)
        rows = list(cursor.fetchall()) if cursor.description else []
        # A text of several statements (a compound one, a folded COMMIT) answers one result per statement,
        # and the error of a later one (a deadlock, a certification failure, a lost node) arrives only when
        # its result is read: read them all here, where the error is handled, never first in `close()`.
        nextset = getattr(cursor, "nextset", None)  # sqlite3 runs one statement and has none
        while nextset is not None and nextset():
            pass
        cursor.close()
        return rows
    except BaseException as exc:
        # SQLAlchemy's own error path for a statement (always raises): the same wrapping, hooks and
        # invalidation as `Connection.execute`; without an execution context, as for a cursor that failed
        # before one existed. It closes the cursor (or invalidates the connection) itself.
        conn._handle_dbapi_exception(exc, sql, params or (), cursor, None)
        raise


def plain_rows(session: Session, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """The rows of a Core statement with plain values (see `driver_rows`), on the session's connection. On
    MariaDB it is compiled once and run on the driver's cursor (expanding `IN` parameters rendered by
    SQLAlchemy's `construct_expanded_state`); elsewhere it is `session.execute`. For statements built once
    (module constants): each one compiled is kept for the process's life."""
    conn = session.connection()
    dialect = conn.dialect
    if dialect.driver != "pymysql":
        return list(session.execute(stmt, params or {}))
    key = (stmt, type(dialect), bool(getattr(dialect, "is_mariadb", False)))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = stmt.compile(dialect=dialect)
    state = compiled.construct_expanded_state(params or {})
    return driver_rows(conn, state.statement, state.positional_parameters if compiled.positional else state.parameters)


NO_BACKSLASH_ESCAPES = "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'NO_BACKSLASH_ESCAPES')"


def _install_sync_wait(engine: Engine, sync_wait: int) -> None:
    """Set `wsrep_sync_wait` on every new connection to a Galera node (`sync_wait` -1: 1 on Galera only)."""
    if sync_wait == 0:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if sync_wait < 0:
                cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
                row = cursor.fetchone()
                if not row or str(row[1]).upper() != "ON":
                    return
            cursor.execute(f"SET SESSION wsrep_sync_wait = {1 if sync_wait < 0 else sync_wait}")
        finally:
            cursor.close()


def _sqlite_engine(settings: Settings) -> Engine:
    private_sqlite_file(settings.database_url)
    engine = create_engine(
        settings.database_url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand BEGIN over to the "begin" listener below (pysqlite would otherwise defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # Makes REPLACE fire DELETE triggers, so INSERT OR REPLACE cannot rewrite the audit log.
        cursor.execute("PRAGMA recursive_triggers=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE")

    return engine


class Database:
    """The engine and the session factory the whole process shares; nothing else lives in memory."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings)
        dbfaults.install(self.engine)
        skip_ended_commit(self.engine)
        self.read_engine = self.engine.execution_options(**{READONLY: True})
        self.dialect = "sqlite" if self.engine.dialect.name == "sqlite" else "mysql"
        # SQLite reports contention only after its busy timeout has been waited out: the time bound of the
        # retries counts from then, or a writer starved once by many others would never be tried again.
        waited = SQLITE_BUSY_TIMEOUT_MS / 1000 if self.dialect == "sqlite" else 0.0
        self.policy = RetryPolicy(attempts=settings.db_attempts, total=settings.db_retry_seconds + waited)
        self._retries = 0
        self._retries_lock = threading.Lock()
        # Called (from the committing thread) after every successful commit of a unit: wakes the pull
        # waiters of this process at once. A hint only: other processes' commits are found by polling.
        self.commit_listeners: list[Callable[[], None]] = []

    @property
    def retries(self) -> int:
        """How many units were run again after a transient database fault since start (a metric, not state)."""
        return self._retries

    def session(self, readonly: bool = False) -> Session:
        return Session(
            bind=self.read_engine if readonly else self.engine,
            autoflush=False,
            expire_on_commit=False,
        )

    def unit(self, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self, readonly=readonly)

    def run(self, work: Callable[[UnitOfWork], T], *, attempts: int | None = None) -> T:
        """Run `work` in one unit and commit it. A transient fault rolls the unit back and runs it again.

        A connection lost during COMMIT is not retried (the unit may have committed, and running it again
        could do it twice): `DatabaseUnavailable` with `outcome_unknown`."""

        def once() -> T:
            with self.unit() as uow:
                result = work(uow)
                uow.commit()
                return uow.numbered(result)

        return self.retrying(once, attempts=attempts)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run a read-only query function in one snapshot-free, lock-free transaction (retried like `run`)."""

        def once() -> T:
            with self.unit(readonly=True) as uow:
                return work(uow.session)

        return self.retrying(once, idempotent=True)

    def retrying(self, attempt: Callable[[], T], *, idempotent: bool = False, attempts: int | None = None) -> T:
        """Call `attempt` (which opens and ends its own units) until it succeeds, under the retry policy.

        `idempotent`: running it again after an unknown outcome is safe (a push, a read), so a connection
        lost during COMMIT is retried too. When the attempts or the time run out, or the database does
        not answer, `DatabaseUnavailable` (the edge answers 503 with Retry-After). Other errors propagate."""
        policy = self.policy
        limit = attempts or policy.attempts
        started = time.monotonic()
        unknown = False
        number = 0
        while True:
            number += 1
            try:
                return attempt()
            except Exception as exc:
                fault = dbfaults.classify(exc)
                if fault is None or isinstance(exc, DatabaseUnavailable):
                    raise
                unknown = unknown or fault.outcome_unknown
                if fault.outcome_unknown and not idempotent:
                    raise self._give_up(fault, number, unknown, idempotent) from exc
                pause = policy.backoff(number)
                if number >= limit or time.monotonic() - started + pause > policy.total:
                    raise self._give_up(fault, number, unknown, idempotent) from exc
                with self._retries_lock:
                    self._retries += 1
                metrics.retried(getattr(exc, "orig", exc))
                log.warning("database %s (attempt %d of %d), retrying: %s", fault.kind, number, limit, fault.reason)
                time.sleep(pause)

    def _give_up(self, fault: Fault, attempts: int, unknown: bool, idempotent: bool) -> DatabaseUnavailable:
        log.error("database %s, giving up after %d attempt(s): %s", fault.kind, attempts, fault.reason)
        return DatabaseUnavailable(fault, attempts=attempts, outcome_unknown=unknown, idempotent=idempotent)

    def is_retryable(self, exc: DBAPIError) -> bool:
        """A database fault (contention, a lost connection, ...) rather than a refusal of this data."""
        return dbfaults.classify(exc) is not None

    def dispose(self) -> None:
        self.engine.dispose()


class Savepoint:
    """A SAVEPOINT of a unit and the snapshot of its `UnitState` taken with it (`UnitOfWork.savepoint`)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.state = uow.state
        self.mark = self.state.snapshot()
        self.nested = uow.session.begin_nested()

    def commit(self) -> None:
        """Keep what was done since (the rows and the recorded state stay the unit's)."""
        self.nested.commit()

    def rollback(self) -> None:
        """Undo the rows and forget what the unit recorded since; the rows it locked or read were expired,
        so they are locked and read again on their next use."""
        self.nested.rollback()
        self.state.restore(self.mark)


class UnitOfWork:
    """One business action, one database transaction. Services flush; only `commit` here makes it durable.

    Before the commit the ledger is written: the change-feed entries and audit entries that services
    recorded get their seqs and hash-chain links under one lock taken as late as possible, so the feed's
    order is the commit order. Leaving the block without `commit()` rolls everything back.
    """

    def __init__(self, db: Database, readonly: bool = False) -> None:
        self.db = db
        self.readonly = readonly
        self.session: Session = db.session(readonly=readonly)
        self.committed = False

    @property
    def settings(self) -> Settings:
        return self.db.settings

    @property
    def state(self) -> UnitState:
        """Everything this unit accumulated until its commit (see `domain.ledger.UnitState`)."""
        from domain.ledger import unit_state

        return unit_state(self.session)

    def savepoint(self) -> Savepoint:
        """A SAVEPOINT with a snapshot of the unit's state taken at the same moment: its `rollback()` undoes
        the rows and everything the unit recorded since (feed changes, audit entries, numbers, staged rows,
        locks and remembered records) at once."""
        return Savepoint(self)

    def __enter__(self) -> UnitOfWork:
        return self

    def commit(self) -> None:
        if self.readonly:
            raise RuntimeError("a read-only unit cannot commit")
        from domain.ledger import write_ledger  # the ledger's models import this module's neighbours

        write_ledger(self.session, commit=True)
        sent = dbfaults.commits_sent()
        try:
            self.session.commit()
        except DBAPIError as exc:
            # Marked here too, not only by the engine hook that matches the failing connection: the unit
            # knows whether its COMMIT went out (a failure of the flush before it is not one).
            if dbfaults.commits_sent() != sent:
                dbfaults.mark_during_commit(exc)
            raise
        self.committed = True
        for listener in list(self.db.commit_listeners):
            try:
                listener()
            except Exception:  # a hint must never fail a committed unit
                log.exception("a commit listener failed")

    def rollback(self) -> None:
        self.session.rollback()

    def numbered(self, value: T) -> T:
        """`value` (an answer built inside the unit) with the document numbers its commit gave: a number is
        a token until the commit's late lock (`domain.ledger.late_number`)."""
        from domain.ledger import given

        return given(value, self.state.numbered, self.state.ids)  # type: ignore[no-any-return]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self.committed and not self.readonly:
                self.session.rollback()
        finally:
            self.session.close()  # a read unit's rows stay readable after it (close does not expire them)
