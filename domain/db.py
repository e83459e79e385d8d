"""Engines, sessions and the unit of work: the only place in the code base that commits.

MariaDB/MySQL runs at READ COMMITTED. Every decision that protects stock or money is taken on rows read with
`SELECT ... FOR UPDATE` (which always read the latest committed version, whatever the level), so REPEATABLE
READ buys nothing there, while its gap and next-key locks make concurrent inserts (new site-stock rows,
idempotency keys, feed rows) deadlock far more often. The change feed does not rely on a snapshot either:
a pull reads the committed feed counter first and then only rows at or below it (see `domain.feed`).

SQLite runs in WAL mode with `foreign_keys=ON`, a busy timeout, and SQLAlchemy's documented recipe that
takes over `BEGIN`: write transactions issue `BEGIN IMMEDIATE` (SQLite has no `SELECT ... FOR UPDATE`, so
without it two writers read the same stock and one update is lost); read-only units issue a plain `BEGIN`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from domain import metrics
from domain.settings import Settings

log = logging.getLogger("lpg.db")
T = TypeVar("T")

READONLY = "lpg_readonly"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# MariaDB: 1213 deadlock victim, 1205 lock wait timeout. Both leave the database unchanged: retry the unit.
RETRYABLE_MYSQL_ERRORS = {1213, 1205}


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    if url.get_backend_name() in {"mysql", "mariadb"}:
        query = dict(url.query)
        query.setdefault("charset", "utf8mb4")
        url = url.set(query=query)
        return create_engine(
            url,
            isolation_level="READ COMMITTED",
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
        )
    raise ValueError(f"unsupported database: {url.get_backend_name()}")


def _sqlite_engine(settings: Settings) -> Engine:
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
        self.read_engine = self.engine.execution_options(**{READONLY: True})
        self.dialect = "sqlite" if self.engine.dialect.name == "sqlite" else "mysql"
        self._retries = 0
        self._retries_lock = threading.Lock()
        # Called (from the committing thread) after every successful commit of a unit: wakes the pull
        # waiters of this process at once. A hint only: other processes' commits are found by polling.
        self.commit_listeners: list[Callable[[], None]] = []

    @property
    def retries(self) -> int:
        """How many units were retried after a deadlock or lock timeout since start (a metric, not state)."""
        return self._retries

    def session(self, readonly: bool = False) -> Session:
        return Session(
            bind=self.read_engine if readonly else self.engine,
            autoflush=False,
            expire_on_commit=False,
        )

    def unit(self, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self, readonly=readonly)

    def run(self, work: Callable[[UnitOfWork], T], *, attempts: int = 5) -> T:
        """Run `work` in one unit and commit it; a deadlock victim is rolled back and run again."""
        for attempt in range(1, attempts + 1):
            try:
                with self.unit() as uow:
                    result = work(uow)
                    uow.commit()
                    return result
            except DBAPIError as exc:
                if attempt == attempts or not self.is_retryable(exc):
                    raise
                with self._retries_lock:
                    self._retries += 1
                metrics.retried(exc.orig)
                log.warning("retrying a unit of work after %s (attempt %d)", exc.orig, attempt)
        raise AssertionError("unreachable")

    def read(self, work: Callable[[Session], T]) -> T:
        """Run a read-only query function in one snapshot-free, lock-free transaction."""
        with self.unit(readonly=True) as uow:
            return work(uow.session)

    def is_retryable(self, exc: DBAPIError) -> bool:
        orig = exc.orig
        if self.dialect == "mysql":
            return bool(getattr(orig, "args", None)) and orig.args[0] in RETRYABLE_MYSQL_ERRORS  # type: ignore[union-attr]
        return isinstance(exc, OperationalError) and "locked" in str(orig)

    def dispose(self) -> None:
        self.engine.dispose()


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

    def __enter__(self) -> UnitOfWork:
        return self

    def commit(self) -> None:
        if self.readonly:
            raise RuntimeError("a read-only unit cannot commit")
        from domain.ledger import write_ledger  # the ledger's models import this module's neighbours

        write_ledger(self.session)
        self.session.commit()
        self.committed = True
        for listener in list(self.db.commit_listeners):
            try:
                listener()
            except Exception:  # a hint must never fail a committed unit
                log.exception("a commit listener failed")

    def rollback(self) -> None:
        self.session.rollback()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self.committed and not self.readonly:
                self.session.rollback()
        finally:
            self.session.close()  # a read unit's rows stay readable after it (close does not expire them)
