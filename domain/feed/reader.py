"""Reading the change feed without gaps, fast, and with an exact `pending`.

No gaps: every page is read in one snapshot (SQLite: one read transaction; MariaDB: `START TRANSACTION
WITH CONSISTENT SNAPSHOT` at REPEATABLE READ, for this read only), and only rows at or below the committed
feed counter (the *ceiling*) are returned. Seqs are taken under the counter's lock and committed with it
(domain/ledger.py), so a change that commits after this read gets a seq above the ceiling: a client that
always asks again from the `last_seq` it was given can never skip one.

Fast: the page is read through the raw DB-API cursor, each result object already built as JSON bytes by
the database (`last_modified` formatted as RFC 3339, `doc` the stored canonical JSON text spliced in), so
the HTTP layer joins bytes and decodes nothing; the driver parses two columns a row instead of seven. A filtered page (a driver's scope, an `entities` list) first finds
its seqs on the (scope, seq) / (entity, seq) indexes, one ordered stream per scope or entity, and then
reads those rows by primary key: a driver whose records are rare never walks the whole feed.

Exact and cheap `pending`: triggers keep `change_feed_counts` (rows per scope, entity and bucket of 1024
seqs, see alembic 0002_pull; on MariaDB a unit with many feed rows counts them itself,
`domain.ledger._upsert_feed`); the count after a page is the sum of the whole buckets plus a direct count
of at most 2 x 1024 rows at the two partial buckets, instead of a COUNT over up to the whole feed (~1 s per
million rows on MariaDB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from domain.db import Database
from domain.feed.models import ALL_ENTITIES, ALL_SCOPES, COUNT_BUCKET, PUBLIC_SCOPE, FeedEntry

# (seq, the result object as UTF-8 JSON bytes, built by the database: seq, entity, id, version,
# last_modified, deleted, doc). The entity names are fixed identifiers, the numbers integers, the time
# formatted, and `doc` is already canonical JSON: nothing in it needs escaping.
RawRow = tuple[int, bytes]

_RESULT = {
    "sqlite": (
        """CAST('{"seq":' || seq || ',"entity":"' || entity || '","id":' || entity_id || ',"version":' || version"""
        """ || ',"last_modified":"' || replace(last_modified, ' ', 'T') || 'Z","deleted":'"""
        """ || CASE WHEN deleted THEN 'true' ELSE 'false' END || ',"doc":' || doc || '}' AS BLOB)"""
    ),
    "mysql": (
        """CAST(CONCAT('{"seq":', seq, ',"entity":"', entity, '","id":', entity_id, ',"version":', version,"""
        """ ',"last_modified":"', DATE_FORMAT(last_modified, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ'), '","deleted":',"""
        """ IF(deleted, 'true', 'false'), ',"doc":', doc, '}') AS BINARY)"""
    ),
}


@dataclass(frozen=True)
class RawPage:
    rows: list[RawRow]
    last_seq: int
    pending: int
    current: int  # the committed feed counter this page was read at


@dataclass(frozen=True)
class FeedPage:
    rows: Sequence[FeedEntry]
    last_seq: int
    pending: int


@dataclass(frozen=True)
class Scope:
    """Who reads: `user` None for an admin (everything), else reference data (scope 0) and the user's own."""

    user: int | None = None
    entities: tuple[str, ...] = ()


class _Cursor:
    """A DB-API cursor with `?` placeholders on both engines."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self.dialect == "mysql":
            sql = sql.replace("?", "%s")
        self.cursor.execute(sql, tuple(params))
        return list(self.cursor.fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.all(sql, params)[0][0]


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _feed_filter(scope: Scope) -> tuple[str, list[Any]]:
    sql, params = "", list[Any]()
    if scope.user is not None:
        sql += " AND scope IN (?, ?)"
        params += [PUBLIC_SCOPE, scope.user]
    if scope.entities:
        sql += f" AND entity IN {_in(scope.entities)}"
        params += list(scope.entities)
    return sql, params


def current(cur: _Cursor) -> int:
    return int(cur.one("SELECT value FROM counters WHERE name = 'feed'"))


def count_between(cur: _Cursor, low: int, high: int, scope: Scope) -> int:
    """Rows in scope with `low < seq <= high`: whole buckets from the counts, partial ones counted."""
    if high <= low:
        return 0
    first, last = low + 1, high
    b_first, b_last = first // COUNT_BUCKET, last // COUNT_BUCKET
    where, params = _feed_filter(scope)
    direct = f"SELECT COUNT(*) FROM change_feed WHERE seq >= ? AND seq <= ?{where}"
    if b_last - b_first <= 1:
        return int(cur.one(direct, [first, last, *params]))
    scopes = [ALL_SCOPES] if scope.user is None else [PUBLIC_SCOPE, scope.user]
    entities = list(scope.entities) or [ALL_ENTITIES]
    buckets = (
        f"SELECT COALESCE(SUM(n), 0) FROM change_feed_counts WHERE scope IN {_in(scopes)} "
        f"AND entity IN {_in(entities)} AND bucket > ? AND bucket < ?"
    )
    sql = f"SELECT ({direct}) + ({buckets}) + ({direct})"
    return int(
        cur.one(
            sql,
            [
                first,
                (b_first + 1) * COUNT_BUCKET - 1,
                *params,
                *scopes,
                *entities,
                b_first,
                b_last,
                b_last * COUNT_BUCKET,
                last,
                *params,
            ],
        )
    )


def _page_seqs(cur: _Cursor, since: int, ceiling: int, limit: int, scope: Scope) -> list[int]:
    """The first `limit` seqs in scope after `since`: one index-ordered stream per scope (or per entity)."""
    if scope.user is not None:
        streams: list[tuple[str, Any]] = [("scope = ?", s) for s in (PUBLIC_SCOPE, scope.user)]
        extra = f" AND entity IN {_in(scope.entities)}" if scope.entities else ""
        extra_params: list[Any] = list(scope.entities)
    else:
        streams = [("entity = ?", e) for e in scope.entities]
        extra, extra_params = "", []
    parts, params = [], []
    for n, (condition, value) in enumerate(streams):
        parts.append(
            f"SELECT seq FROM (SELECT seq FROM change_feed WHERE {condition}{extra} AND seq > ? AND seq <= ? "
            f"ORDER BY seq LIMIT ?) s{n}"
        )
        params += [value, *extra_params, since, ceiling, limit]
    rows = cur.all(" UNION ALL ".join(parts) + " ORDER BY seq LIMIT ?", [*params, limit])
    return [int(r[0]) for r in rows]


# MariaDB: a page comes back joined by the server (GROUP_CONCAT), so the driver parses one packet instead
# of a packet a row in Python. The joined text is capped at this length: a page whose text is longer comes
# back cut, and its whole results are kept and the rest read by the next joined read, from the seq after
# them (a page of 10,000 results of ~1 KB is two reads). Only a single result longer than the cap is read
# on its own, row by row.
PACKED_MAX = 8 * 1024 * 1024
SEPARATOR = "\n"


def _rows(cur: _Cursor, where: str, params: list[Any], limit: int | None) -> list[RawRow]:
    """The rows matching `where` in seq order (at most `limit`), each as (seq, result JSON bytes)."""
    result = _RESULT[cur.dialect]
    tail = " ORDER BY seq" + (" LIMIT ?" if limit is not None else "")
    args = [*params, *([limit] if limit is not None else [])]
    if cur.dialect != "mysql":
        return _row_by_row(cur, result, where, tail, args)
    if limit is not None:
        # The page's last seq first (a walk of `limit` primary key entries, no result built), so that
        # the results are joined straight from a range of the primary key: a derived table with ORDER
        # BY and LIMIT is materialized, documents and all, before GROUP_CONCAT reads it again (about
        # a fifth of a page's time).
        bound = cur.all(
            f"SELECT seq FROM change_feed WHERE {where} ORDER BY seq LIMIT 1 OFFSET ?", [*params, limit - 1]
        )
        if bound:
            where, params = f"{where} AND seq <= ?", [*params, bound[0][0]]
    rows: list[RawRow] = []
    after: list[Any] = []  # the seq the next joined read starts after, once one came back cut
    while True:
        [(seq_text, joined)] = cur.all(
            "SELECT GROUP_CONCAT(seq SEPARATOR ','), GROUP_CONCAT("
            # The separator is a real newline inside the literal, not the escape `\n`: the connections run
            # with NO_BACKSLASH_ESCAPES (domain/db.py), where `'\n'` is a backslash and an n.
            f"{result} SEPARATOR '{SEPARATOR}') FROM change_feed WHERE {where}{' AND seq > ?' if after else ''}",
            [*params, *after],
        )
        if seq_text is None:
            break
        seqs = [int(x) for x in seq_text.split(b"," if isinstance(seq_text, bytes) else ",")]
        # No result contains a raw newline (canonical JSON escapes control characters in strings).
        parts = joined.split(SEPARATOR.encode()) if joined is not None else []
        if len(parts) == len(seqs) and len(joined) < PACKED_MAX:  # at the cap: maybe cut inside the last
            rows += zip(seqs, parts, strict=True)
            break
        # Cut at the cap: every part but the last is whole (the last may be whole too, or cut anywhere).
        # The rest is read from the seq after the whole ones, which needs them to be the lowest seqs: both
        # GROUP_CONCATs read the rows in the primary key's order, checked here.
        whole = list(zip(seqs, parts[:-1], strict=False))
        if not whole or any(x >= y for x, y in pairwise(seqs)):  # one result alone is longer than the cap
            rest = f"{where} AND seq > ?" if after else where
            return sorted(rows + _row_by_row(cur, result, rest, " ORDER BY seq", [*params, *after]))
        rows += whole
        after = [whole[-1][0]]
    return rows if all(x[0] < y[0] for x, y in pairwise(rows)) else sorted(rows)


def _row_by_row(cur: _Cursor, result: str, where: str, tail: str, args: list[Any]) -> list[RawRow]:
    return [
        (int(seq), bytes(doc))
        for seq, doc in cur.all(f"SELECT seq, {result} FROM change_feed WHERE {where}{tail}", args)
    ]


def raw_page(cur: _Cursor, since: int, limit: int, scope: Scope) -> RawPage:
    """The next page after `since` in one snapshot (the caller opened it): rows, last_seq, pending."""
    ceiling = current(cur)
    since = min(since, ceiling)  # a seq from the future (another database, a restore) restarts at the head
    if scope.user is None and not scope.entities:
        rows = _rows(cur, "seq > ? AND seq <= ?", [since, ceiling], limit + 1)
        extra_seq = rows[limit][0] if len(rows) > limit else None
        rows = rows[:limit]
    else:
        seqs = _page_seqs(cur, since, ceiling, limit + 1, scope)
        extra_seq = seqs[limit] if len(seqs) > limit else None
        seqs = seqs[:limit]
        rows = _rows(cur, f"seq IN {_in(seqs)}", seqs, None) if seqs else []
    if extra_seq is None:
        return RawPage(rows, ceiling, 0, ceiling)
    # Everything below the next row in scope was examined: nothing in scope lies between the page's last
    # row and it, so the next page starts right before it (a driver never rescans other drivers' rows).
    last_seq = extra_seq - 1
    return RawPage(rows, last_seq, count_between(cur, last_seq, ceiling, scope), ceiling)


class Snapshot:
    """A pooled DB-API connection in one consistent, read-only snapshot; returned to the pool on exit.

    The driver is used directly (no SQLAlchemy in between), so its errors are made SQLAlchemy's here, as
    SQLAlchemy would: a lost connection is invalidated (never handed out again) and the error is a
    `DBAPIError` that `domain.dbfaults.classify` knows, so a database fault is a retry or a 503, never a 500."""

    def __init__(self, db: Database, consistent: bool = True) -> None:
        self.db = db
        self.consistent = consistent  # False: one short read, in the driver's own implicit transaction

    def __enter__(self) -> _Cursor:
        try:
            self.conn = self.db.engine.raw_connection()  # the pool's own connect: the driver's error as is
        except Exception as exc:
            error = driver_error(self.db, exc)
            if error is None:
                raise
            raise error from exc
        try:
            cursor = self.conn.cursor()
            if self.consistent and self.db.dialect == "sqlite":
                cursor.execute("BEGIN")
            elif self.consistent:
                if not self.conn.info.get("lpg_packed_pages"):
                    cursor.execute(f"SET SESSION group_concat_max_len = {PACKED_MAX}")
                    self.conn.info["lpg_packed_pages"] = True
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        except BaseException as exc:  # noqa: BLE001 - released, then raised again
            self._release(exc)
        return _Cursor(cursor, self.db.dialect)

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if exc is not None:
            self._release(exc)
        try:
            self.conn.rollback()
        except BaseException as failed:  # noqa: BLE001 - released, then raised again
            self._release(failed)
        self.conn.close()

    def _release(self, exc: BaseException) -> None:
        """Give the connection back (invalidated after a driver error) and raise `exc` as SQLAlchemy's."""
        error = driver_error(self.db, exc)
        if error is not None:
            self.conn.invalidate(exc)
            self.conn.close()
            raise error from exc
        self.conn.close()
        raise exc


def driver_error(db: Database, exc: BaseException) -> DBAPIError | None:
    """A DB-API error of the engine's driver, wrapped as SQLAlchemy wraps it (None for anything else)."""
    dbapi = db.engine.dialect.loaded_dbapi
    if isinstance(exc, DBAPIError) or not isinstance(exc, dbapi.Error):
        return None
    return DBAPIError.instance(None, None, exc, dbapi.Error, connection_invalidated=True, dialect=db.engine.dialect)  # type: ignore[arg-type,return-value]


def fetch_page(db: Database, since: int, limit: int, scope: Scope) -> RawPage:
    """The next page, in its own snapshot; a transient fault reads again (the read is idempotent)."""

    def read() -> RawPage:
        with Snapshot(db) as cur:
            return raw_page(cur, since, limit, scope)

    return db.retrying(read, idempotent=True)


def fetch_current(db: Database) -> int:
    """The committed feed counter, in its own short read (no transaction is left open)."""

    def read() -> int:
        with Snapshot(db, consistent=False) as cur:
            cur.cursor.execute("SELECT value FROM counters WHERE name = 'feed'")
            return int(cur.cursor.fetchone()[0])

    return db.retrying(read, idempotent=True)


def read_page(
    session: Session,
    since: int,
    limit: int,
    scope_user: int | None = None,
    entities: Sequence[str] | None = None,
) -> FeedPage:
    """The next page after `since` as ORM rows, in the session's transaction (see `raw_page`)."""
    dbapi: Any = session.connection().connection.dbapi_connection
    dialect = "sqlite" if session.get_bind().dialect.name == "sqlite" else "mysql"
    page = raw_page(_Cursor(dbapi.cursor(), dialect), since, limit, Scope(scope_user, tuple(entities or ())))
    seqs = [row[0] for row in page.rows]
    rows = session.scalars(select(FeedEntry).where(FeedEntry.seq.in_(seqs)).order_by(FeedEntry.seq)).all()
    return FeedPage(rows, page.last_seq, page.pending)
