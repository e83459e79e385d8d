"""The end of every write transaction: change-feed seqs and audit-chain links, under one late lock.

Services only *record* what changed (`record_change`, `audit`); the records wait in the session. Just
before the commit, the unit of work calls `write_ledger`, which

1. flushes the session, so every new record has its id;
2. builds each changed record's document (its REST representation) and each audit entry's context;
3. locks the `audit` and `feed` counter rows and the document-number series the unit used, in one sorted
   `SELECT ... FOR UPDATE`;
4. turns the number tokens (`late_number`) into the series' next numbers, in the rows, documents and
   contexts, and writes the rows whose text names them (a push's stored answers);
5. gives the feed entries consecutive seqs after the feed counter and the audit entries consecutive ids
   after the audit counter, each entry's hash chained to the one before, writes them with multi-row
   statements and moves every counter with one UPDATE.

The counter locks are held until the commit, so no other transaction can take a seq, an audit id or a
number in between: seq and number order is commit order (a change committed after a `last_seq` was handed
out always gets a higher seq), and the audit chain is linked in commit order even with many writers.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from pymysql.constants import SERVER_STATUS
from pymysql.converters import Decimal2Literal, escape_bool, escape_int
from pymysql.cursors import RE_INSERT_VALUES
from sqlalchemy import Column, Table, bindparam, case, event, func, insert, inspect, select, text, update
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from domain.audit.models import AuditEntry
from domain.base import UTCDateTime, datetime_text
from domain.clock import rfc3339, utcnow
from domain.db import committed_in_statement, driver_rows, plain_rows
from domain.dbfaults import mark_during_commit
from domain.feed.models import COUNT_BUCKET, PUBLIC_SCOPE, Counter, FeedEntry

STATE_KEY = "lpg_unit"  # session.info: the one `UnitState` of the transaction
AUDIT_TABLE: Table = AuditEntry.__table__  # type: ignore[assignment]
FEED_COUNTER = "feed"
AUDIT_COUNTER = "audit"
GENESIS_HASH = "0" * 64
# Rows per multi-row statement: well under SQLite's variable limit and MariaDB's packet size.
CHUNK = 400
# Values renamed per UPDATE (three parameters each): a batch's numbers in one statement per column.
RENAME_CHUNK = 1000

Doc = dict[str, Any]
Target = Any  # an ORM object with `id`, `version`, `last_modified`, or a plain int id


@dataclass
class PendingChange:
    entity: str
    target: Target
    scope: int
    deleted: bool
    doc: Callable[[], Doc] | Doc | None
    version: int | None = None
    last_modified: datetime | None = None


@dataclass
class PendingAudit:
    at: datetime
    user_id: int | None
    device_id: str | None
    action: str
    entity_type: str
    target: Target
    context: Callable[[], Doc] | Doc


class Staged:
    """A new record that is not an ORM object: its row is written with the other staged rows of its table
    by one multi-row INSERT at the unit's next flush (`flush_all`), at a fraction of the ORM's cost per
    row (a sync batch of 500 new customers or sales). It reads like the record: its column values are
    attributes (set them before the flush and the row is written with them), other attributes may stand in
    for relationships (`trx.deliveries`), and `id` is None until the row is written. A column's value may
    be another staged record: the row is written after it, with its id. Use it for records nothing else in
    the unit changes before the flush; a later change loads the written row as a normal ORM object."""

    def __init__(self, session: Session, table: Table, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
        self.id: int | None = None
        self.staged_in, self.table, self.columns = session, table, tuple(values)
        # References are kept apart: a row written again (after a savepoint rollback) takes the new ids.
        self.refs = {column: value for column, value in values.items() if isinstance(value, Staged)}

    if TYPE_CHECKING:  # columns and stand-ins are plain attributes, set per table

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...

    def ready(self) -> bool:
        """Every staged record this row refers to is written."""
        return all(ref.id is not None for ref in self.refs.values())

    def params(self) -> dict[str, Any]:
        """The row to insert; references to staged records become their ids (readers see the ids too)."""
        row = self.__dict__
        for column, ref in self.refs.items():
            row[column] = ref.id
        return {column: row[column] for column in self.columns}


Mark = tuple[int, int, int, int, int, int, int]

# A document number before the late lock: `~N` and 16 random hex digits (unique among concurrent
# transactions, so a UNIQUE number column takes it; 18 characters fit every number column).
TOKEN_MARK = "~N"
_TOKEN = re.compile(r"~N[0-9a-f]{16}")


Deferred = tuple[Any, list[dict[str, Any]], "str | None"]


class RowMoved(Exception):
    """A deferred UPDATE that had to change exactly one row did not find it (another transaction changed
    the row's key first): the unit rolls back, and its caller decides (a push runs again)."""


@dataclass
class Ledger:
    """What the current transaction changed, in the order it happened, waiting for the commit."""

    changes: list[PendingChange] = field(default_factory=list)
    audits: list[PendingAudit] = field(default_factory=list)
    settled: int = 0  # audits before this index have their contexts frozen (see settle_audits)
    # Document numbers handed out as tokens, in order: (series such as "TRX-2026", token). Each becomes
    # the series' next number under the late lock (`write_ledger`).
    numbers: list[tuple[str, str]] = field(default_factory=list)
    # Where tokens were written before the lock: (column, the value written), rewritten under the lock.
    sinks: list[tuple[Column[Any], str]] = field(default_factory=list)
    # Writes that wait for the late lock (a push's stored answers, its device counters): (statement, rows,
    # what to say when an UPDATE does not find exactly one row, or None), with the numbers in their texts.
    deferred: list[Deferred] = field(default_factory=list)
    staged: list[Staged] = field(default_factory=list)
    written: int = 0  # staged rows before this index are in the database (or hold an id token, below)
    # Staged rows whose INSERT waits for the late lock's statement, in insert order: their `id` is an id token
    # until then (`write_staged(id_tokens=True)`, `resolve_ids`).
    ids: list[Staged] = field(default_factory=list)

    def mark(self) -> Mark:
        return (
            len(self.changes),
            len(self.audits),
            len(self.numbers),
            len(self.sinks),
            len(self.deferred),
            len(self.staged),
            self.written,
        )

    def rollback_to(self, mark: Mark) -> None:
        """Forget what a rolled-back savepoint recorded, numbers included (its tokens were never numbered,
        so the next number of the series is the same as if the savepoint had never run). Staged rows of
        earlier changes that were written inside the savepoint went with it: written again later."""
        del self.changes[mark[0] :]
        del self.audits[mark[1] :]
        self.settled = min(self.settled, len(self.audits))
        del self.numbers[mark[2] :]
        del self.sinks[mark[3] :]
        del self.deferred[mark[4] :]
        del self.staged[mark[5] :]
        for row in self.staged[mark[6] :]:
            row.id = None
        self.written = min(mark[6], len(self.staged))
        if self.ids:  # tokens handed out inside the savepoint went with it
            kept = {id(row) for row in self.staged}
            self.ids = [row for row in self.ids if id(row) in kept and row.id is not None]

    def clear(self) -> None:
        self.changes.clear()
        self.audits.clear()
        self.settled = 0
        self.numbers.clear()
        self.sinks.clear()
        self.deferred.clear()
        self.staged.clear()
        self.written = 0
        self.ids.clear()


Snapshot = tuple[Mark, int]


@dataclass
class UnitState:
    """Everything one unit of work accumulates until its commit, in one typed object (`unit_state`).

    Each part belongs to one module, which alone reads and writes it; the unit of work and the reconciler
    handle the whole: `snapshot()` before a savepoint, `restore()` after rolling it back."""

    ledger: Ledger = field(default_factory=Ledger)  # changes, audit entries, numbers, staged rows
    stock_locks: dict[Any, Any] = field(default_factory=dict)  # domain.logistics.stock: rows locked
    meters: dict[int, list[Any]] = field(default_factory=dict)  # domain.sales.planning: meters locked
    catalog: dict[Any, Any] = field(default_factory=dict)  # domain.catalog.lookups: records held
    prices: dict[int, dict[Any, Any]] = field(default_factory=dict)  # domain.catalog.lookups: overrides
    added: int = 0  # reconcile.tripwire: ORM objects added to the session
    last_seq: int | None = None  # the feed seq the ledger write reached (set at commit)
    numbered: dict[str, str] = field(default_factory=dict)  # token -> document number (set at commit)
    ids: dict[int, int] = field(default_factory=dict)  # id token -> the row's id (set at commit)

    def snapshot(self) -> Snapshot:
        return self.ledger.mark(), self.added

    def restore(self, snapshot: Snapshot) -> None:
        """After a rolled-back savepoint: forget what it recorded; the rows it locked or read were expired,
        so locks, meters and remembered records are taken and read again on their next use."""
        self.ledger.rollback_to(snapshot[0])
        self.stock_locks.clear()
        self.meters.clear()
        self.catalog.clear()
        self.prices.clear()

    def unchanged_since(self, snapshot: Snapshot) -> bool:
        """Nothing recorded, numbered, staged or added since `snapshot`."""
        return self.snapshot() == snapshot


def _ledger_if_any(session: Session) -> Ledger | None:
    state = session.info.get(STATE_KEY)
    return state.ledger if state is not None else None


def unit_state(session: Session) -> UnitState:
    state = session.info.get(STATE_KEY)
    if state is None:
        state = session.info[STATE_KEY] = UnitState()
    return state  # type: ignore[no-any-return]


def ledger_of(session: Session) -> Ledger:
    return unit_state(session).ledger


class SharedDoc:
    """A record's document built once per state of the record: a change's feed entry and its audit entry's
    `after` describe the same state, so they share one build. The state is the record's (id, version):
    every change to a record, or to what its document shows, moves its version (`touch`)."""

    __slots__ = ("build", "key", "target", "value")

    def __init__(self, target: Any, build: Callable[[], Doc]) -> None:
        self.target, self.build = target, build
        self.key: tuple[Any, Any] | None = None
        self.value: Doc = {}

    def __call__(self) -> Doc:
        key = (self.target.id, self.target.version)
        if key != self.key or key[0] is None:
            self.value, self.key = self.build(), key
        return self.value


# -- document numbers, given out late ---------------------------------------------------------------


def late_number(session: Session, series: str, column: Column[Any] | None) -> str:
    """The next number of `series` ("TRX-2026") for a row whose `column` holds it, as a token for now.

    The token stands in everywhere until the commit: in the row (written with it), in documents, audit
    contexts and answers. Under the late lock `write_ledger` gives the tokens the series' next numbers, in
    the order they were handed out, rewrites the column, and puts the numbers into every document and
    context it writes; `with_numbers` does the same for answers. So a counter row is locked only from the
    late lock to the COMMIT, never across a service's work, and a rolled-back transaction or savepoint
    uses no number: numbers stay gap-free and unique."""
    token = TOKEN_MARK + secrets.token_hex(8)
    ledger = ledger_of(session)
    ledger.numbers.append((series, token))
    if column is not None:
        ledger.sinks.append((column, token))
    return token


def holds_numbers(session: Session, column: Column[Any], value: str) -> None:
    """`column` of a row of this unit was written with `value`, which names document numbers by their
    tokens (an e-mail's Message-ID): rewritten with the numbers under the late lock. `column` is unique."""
    if TOKEN_MARK in value:
        ledger_of(session).sinks.append((column, value))


def write_after_numbers(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` under the late lock, with the document numbers in place where their texts name tokens
    (a push's stored answers). They go with the other locked writes: on MariaDB in the same round trip, so
    they cost the push no round trip of their own. A unique key they break (a resend racing its original)
    fails the commit, as it would have failed the INSERT."""
    if rows:
        ledger_of(session).deferred.append((stmt, rows, None))


def update_one_after_numbers(session: Session, stmt: Any, params: dict[str, Any], moved: str) -> None:
    """Run the UPDATE `stmt` for one row under the late lock, with the other locked writes (on MariaDB in
    the same round trip). It must change exactly one row; otherwise the commit fails with `RowMoved(moved)`
    and nothing of the unit is written."""
    ledger_of(session).deferred.append((stmt, [params], moved))


def with_numbers(value: Any, numbers: dict[str, str]) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with every token replaced by its number."""
    if not numbers:
        return value
    if isinstance(value, str):
        return _TOKEN.sub(lambda m: numbers.get(m[0], m[0]), value) if TOKEN_MARK in value else value
    # A value that cannot hold a token is taken as it is, without a call: a batch's locked rows and answers
    # hold thousands of numbers, times and token-free strings.
    if isinstance(value, dict):
        return {k: v if _no_token(v) else with_numbers(v, numbers) for k, v in value.items()}
    if isinstance(value, list):
        return [v if _no_token(v) else with_numbers(v, numbers) for v in value]
    if isinstance(value, tuple):
        return tuple(v if _no_token(v) else with_numbers(v, numbers) for v in value)
    return value


_SCALARS = frozenset({int, float, bool, type(None), Decimal, datetime, date, bytes})


def _no_token(value: Any) -> bool:
    cls = value.__class__
    return cls in _SCALARS or (cls is str and TOKEN_MARK not in value)


def preview_numbers(session: Session) -> dict[str, str]:
    """The numbers this unit's tokens would get if it committed now (a dry run's answer), read without
    locking: another writer may take them first."""
    ledger = _ledger_if_any(session)
    if ledger is None or not ledger.numbers:
        return {}
    series = sorted({name for name, _ in ledger.numbers})
    rows = session.execute(select(Counter.name, Counter.value).where(Counter.name.in_(series)))
    last = {name: int(value) for name, value in rows}
    return _assign(ledger.numbers, last)


def number_text(series: str, value: int) -> str:
    """`TRX-2026-000999`: the series (prefix and business year), a sequence padded to 6 digits."""
    return f"{series}-{value:06d}"


def _assign(numbers: list[tuple[str, str]], last: dict[str, int]) -> dict[str, str]:
    """token -> number: each series counts on from `last` (its counter) in the order tokens were given;
    `last` ends at each series' last number."""
    assigned = {}
    for series, token in numbers:
        last[series] = value = last.get(series, 0) + 1
        assigned[token] = number_text(series, value)
    return assigned


def _renames(
    sinks: list[tuple[Column[Any], str]], numbers: dict[str, str]
) -> Iterable[tuple[Column[Any], list[tuple[str, str]]]]:
    """(column, [(token text, numbered text), ...]) for every column written with tokens, in chunks of
    at most RENAME_CHUNK renames: each chunk is one UPDATE."""
    by_column: dict[Column[Any], dict[str, str]] = {}
    for column, value in sinks:
        by_column.setdefault(column, {})[value] = with_numbers(value, numbers)
    for column, renames in by_column.items():
        items = list(renames.items())
        for start in range(0, len(items), RENAME_CHUNK):
            yield column, items[start : start + RENAME_CHUNK]


def _write_numbers(session: Session, sinks: list[tuple[Column[Any], str]], numbers: dict[str, str]) -> None:
    """Rewrite every column written with tokens: one UPDATE per column (a CASE for many rows)."""
    for column, chunk in _renames(sinks, numbers):
        if len(chunk) == 1:
            ((old, new),) = chunk
            session.execute(_rename_statement(column), {"old": old, "new": new})
        else:
            renames = dict(chunk)
            session.execute(
                update(column.table).where(column.in_(list(renames))).values({column: case(renames, value=column)})
            )


def _number_in_memory(session: Session, ledger: Ledger, numbers: dict[str, str]) -> None:
    """The records this unit holds show their numbers too (a caller reads them after the commit): the
    staged rows and the ORM objects of the tables written with tokens, set as committed values (the
    database has them already, so the ORM writes nothing more)."""
    keys: dict[Any, set[str]] = {}
    for column, _value in ledger.sinks:
        keys.setdefault(column.table, set()).add(column.key)
    for row in ledger.staged:
        for key in keys.get(row.table, ()):
            value = row.__dict__.get(key)
            if isinstance(value, str) and TOKEN_MARK in value:
                row.__dict__[key] = with_numbers(value, numbers)
    for obj in list(session.identity_map.values()):
        for key in keys.get(getattr(type(obj), "__table__", None), ()):
            value = obj.__dict__.get(key)
            if isinstance(value, str) and TOKEN_MARK in value:
                set_committed_value(obj, key, with_numbers(value, numbers))


_RENAMES: dict[Any, Any] = {}


def _rename_statement(column: Column[Any]) -> Any:
    stmt = _RENAMES.get(column)
    if stmt is None:
        stmt = _RENAMES[column] = (
            update(column.table).where(column == bindparam("old")).values({column.key: bindparam("new")})
        )
    return stmt


def stage(session: Session, table: Table, values: dict[str, Any]) -> Staged:
    """Stage a new row of `table` (every column a reader needs among `values`); see `Staged`."""
    row = Staged(session, table, values)
    ledger_of(session).staged.append(row)
    return row


def row_ref(record: Any) -> Any:
    """How a staged row names `record` in a column: the staged record itself (its row is written first
    and the column gets its id), or the id of a record that has one."""
    return record if isinstance(record, Staged) else record.id


def write_staged(session: Session, *, late: bool = False, id_tokens: bool = False) -> None:
    """Write the staged rows not yet written, one multi-row INSERT per table (see `_insert_rows`). With
    `late`, rows of the tables registered by `write_late` (rows whose ids nothing reads) are not inserted
    now but with the unit's locked writes; they keep `id` None.

    With `id_tokens` (MariaDB, the unit's last flush before its commit), single rows that refer to each
    other (a new customer; a sale and its invoice) are not inserted now either: each gets an id token (see
    `_id_token`) that stands in for its id everywhere until the late lock's statement inserts it and puts
    the id in its place (`_write_in_one_trip`), as a document number's token does. Anything that must see
    the real ids first (an ORM flush, a unit too big for that statement) inserts them then (`resolve_ids`)."""
    ledger = _ledger_if_any(session)
    if ledger is None or ledger.written >= len(ledger.staged):
        return
    pending = ledger.staged[ledger.written :]
    ledger.written = len(ledger.staged)
    mariadb = getattr(session.get_bind().dialect, "is_mariadb", False)
    chain = _single_row_chain(pending, late, 1 if id_tokens else 2) if mariadb else None
    if chain and id_tokens:
        for row in chain:
            row.id = _id_token()
        for row in chain:
            row.params()  # its references now read as (token) ids
        ledger.ids.extend(chain)
    if chain and (id_tokens or _insert_chain(session, chain)):
        chained = {id(row) for row in chain}
        pending = [row for row in pending if id(row) not in chained]  # only late rows are left
    while pending:  # rows that refer to staged rows wait for a later round (a sale's lines for the sale)
        ready = [row for row in pending if row.ready()]
        if not ready:
            raise RuntimeError("staged rows refer to staged rows that are not in this unit")
        by_kind: dict[tuple[Table, tuple[str, ...]], list[Staged]] = {}
        for row in ready:
            by_kind.setdefault((row.table, row.columns), []).append(row)
        for (table, _columns), rows in by_kind.items():
            if late and table in _LATE_TABLES:
                write_after_numbers(session, _statement(table, "insert"), [r.params() for r in rows])
                continue
            for chunk in _chunks(rows):
                ids = _insert_rows(session, table, [r.params() for r in chunk])
                for row, new_id in zip(chunk, ids, strict=True):
                    row.id = new_id
        done = {id(row) for row in ready}
        pending = [row for row in pending if id(row) not in done]


def _single_row_chain(pending: list[Staged], late: bool, least: int = 2) -> list[Staged] | None:
    """The rows `write_staged` would insert in its rounds, in order, when every table of every round has one
    row, and there are at least `least` (a confirmed sale: its transaction, then its invoice); None otherwise.
    Rows of the late tables are not in it (they go with the locked writes, after it)."""
    if len(pending) < least:
        return None
    chain: list[Staged] = []
    known: set[int] = set()
    remaining = pending
    while remaining:
        ready = [row for row in remaining if all(r.id is not None or id(r) in known for r in row.refs.values())]
        if not ready:
            return None
        tables = [(row.table, row.columns) for row in ready if not (late and row.table in _LATE_TABLES)]
        if len(set(tables)) != len(tables):  # two rows of one table: one multi-row INSERT, as usual
            return None
        chain += [row for row in ready if not (late and row.table in _LATE_TABLES)]
        known |= {id(row) for row in ready}
        remaining = [row for row in remaining if id(row) not in known]
    return chain if len(chain) >= least else None


# An id token: an integer no table reaches (2**62 and up, 19 digits), random so that its digits name one row
# of one unit in any text (a document, an audit context, a stored answer).
ID_TOKEN_LOW = 1 << 62


def _id_token() -> int:
    return ID_TOKEN_LOW + secrets.randbits(61)


def resolve_ids(session: Session) -> dict[int, int]:
    """Insert the rows still holding id tokens now (one round trip on MariaDB, `_insert_chain`, else one
    `INSERT ... RETURNING` a row) and put their ids in place of the tokens: in the rows, in the writes
    waiting for the late lock, and in the unit's `ids` (for answers built meanwhile). token -> id."""
    ledger = _ledger_if_any(session)
    if ledger is None or not ledger.ids:
        return {}
    chain, ledger.ids = list(ledger.ids), []
    tokens = [row.id for row in chain]
    for row in chain:
        row.id = None
    if not (len(chain) > 1 and _insert_chain(session, chain)):
        for row in chain:  # in order: a row's references are written before it
            (row.id,) = _insert_rows(session, row.table, [row.params()])
    ids = {int(token): int(row.id) for token, row in zip(tokens, chain, strict=True)}  # type: ignore[arg-type]
    _ids_in_place(session, ledger, ids)
    ledger.deferred = [(stmt, with_ids(rows, ids), moved) for stmt, rows, moved in ledger.deferred]
    return ids


def _ids_in_place(session: Session, ledger: Ledger, ids: dict[int, int]) -> None:
    """The staged rows' references read as the new ids, and the unit keeps the ids for its answer."""
    for row in ledger.staged:
        if row.refs:
            row.params()
    unit_state(session).ids.update(ids)


def given(value: Any, numbers: dict[str, str], ids: dict[int, int]) -> Any:
    """An answer built inside a unit (tokens in it) with the document numbers and new rows' ids its commit
    gave (`UnitState.numbered`, `UnitState.ids`), or a dry run's preview of the numbers."""
    return with_ids(with_numbers(value, numbers), ids)


def with_ids(value: Any, ids: dict[int, int]) -> Any:
    """`value` (JSON-like, or a row) with every id token replaced by its id: an integer that is one, and its
    digits in a text."""
    if not ids:
        return value
    cls = value.__class__
    if cls is int:
        return ids.get(value, value)
    if cls is str:
        for token, new in ids.items():
            digits = str(token)
            if digits in value:
                value = value.replace(digits, str(new))
        return value
    if cls is dict:
        return {k: with_ids(v, ids) for k, v in value.items()}
    if cls is list:
        return [with_ids(v, ids) for v in value]
    if cls is tuple:
        return tuple(with_ids(v, ids) for v in value)
    return value


def _insert_chain(session: Session, chain: list[Staged]) -> bool:
    """MariaDB: single rows that refer to each other (a sale's transaction, then its invoice that names it)
    inserted in one round trip instead of one `INSERT ... RETURNING` each:

        DECLARE lpg_s0, lpg_s1 BIGINT;
        INSERT INTO transactions (...) VALUES (...); SET lpg_s0 = LAST_INSERT_ID();
        INSERT INTO invoices (..., transaction_id, ...) VALUES (..., lpg_s0, ...); SET lpg_s1 = LAST_INSERT_ID();
        SELECT lpg_s0, lpg_s1

    LAST_INSERT_ID() is the id of this connection's last single-row INSERT, whatever the auto-increment step
    or lock mode (Galera's interleaved one included). False with nothing sent where the statement cannot
    carry the rows (not MariaDB, a value only SQLAlchemy renders): the caller inserts them as usual."""
    writes = LockedWrites(session, single=True)
    if not writes.batched or row_literals(writes.cursor.connection) is None:
        return False
    names: dict[int, str] = {}
    try:
        writes._add("DECLARE " + ", ".join(f"lpg_s{k}" for k in range(len(chain))) + " BIGINT", compound=True)
        for k, row in enumerate(chain):
            params = row.params()
            for column, ref in row.refs.items():
                if id(ref) in names:
                    params[column] = SqlText(names[id(ref)])
            _insert_one(writes, row.table, params, f"lpg_s{k}")
            names[id(row)] = f"lpg_s{k}"
        writes._add("SELECT " + ", ".join(names.values()), compound=True)
        (ids,) = writes.send(last=True)
    except NotOneTrip:
        return False
    for row, new_id in zip(chain, ids, strict=True):
        row.id = int(new_id)
    for row in chain:
        row.params()  # its references now read as ids
    return True


def _insert_one(writes: LockedWrites, table: Table, params: dict[str, Any], variable: str) -> None:
    """Inside a compound statement: insert one row (values that are `SqlText` written as they are) and keep
    its new id in `variable`. `NotOneTrip` where SQLAlchemy would convert such a value."""
    stmt = _statement(table, "insert")
    plan = _cached_plan(stmt, writes.dialect, tuple(params))
    if plan is None or any(
        make is not None or process is not None
        for name, process, make in plan[1]
        if isinstance(params.get(name), SqlText)
    ):
        raise NotOneTrip("a reference SQLAlchemy would convert")
    writes.rows(stmt, [params])
    writes._add(f"SET {variable} = LAST_INSERT_ID()", compound=True)


def _insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows`; their new ids, in order.

    MariaDB answers a multi-row `INSERT ... RETURNING` in the rows' order. SQLite has no such ordering
    guarantee, so SQLAlchemy would send the rows one by one; but a SQLite writer holds the database alone
    (`BEGIN IMMEDIATE`), so one `executemany` gives the rows consecutive ids ending at
    `last_insert_rowid()`. That is checked (the range must hold exactly these rows), never assumed."""
    if session.get_bind().dialect.name != "sqlite":
        return _insert_returning(session, table, rows)
    if len(rows) == 1:  # one row: its own id, no order to keep
        return [session.execute(_statement(table, "returning"), rows[0]).scalar_one()]
    execute_many(session, _statement(table, "insert"), rows)
    last = int(session.execute(text("SELECT last_insert_rowid()")).scalar_one())
    first = last - len(rows) + 1
    held = session.execute(select(func.count()).select_from(table).where(table.c.id.between(first, last))).scalar_one()
    if held != len(rows):
        raise RuntimeError(f"{table.name}: the new rows' ids are not consecutive")
    return list(range(first, last + 1))


# (statement, dialect, columns) -> (SQL, how each parameter is made), or None where SQLAlchemy must run it
_PLANS: dict[tuple[Any, str, tuple[str, ...]], tuple[str, Binds] | None] = {}


def _cached_plan(stmt: Any, dialect: Any, columns: tuple[str, ...]) -> tuple[str, Binds] | None:
    key = (stmt, dialect.name, columns)
    if key not in _PLANS:
        _PLANS[key] = _plan(stmt, dialect, columns)
    return _PLANS[key]


def execute_many(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """`session.execute(stmt, rows)` for a fixed INSERT (or upsert) of many rows with the same columns, at a
    fraction of the cost: the statement is compiled once, and each row becomes a tuple through the columns'
    own bind processors (the values SQLAlchemy would send), handed to the driver's `executemany` (PyMySQL
    makes it one multi-row INSERT). Statements with Python-side defaults or other parameters go the usual way."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    plan = _cached_plan(stmt, dialect, tuple(rows[0]))
    if plan is None:
        session.execute(stmt, rows)
        return
    sql, binds = plan
    conn.exec_driver_sql(sql, [_row_values(binds, r) for r in rows])


def _insert_returning(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """MariaDB: one multi-row `INSERT ... RETURNING id` built from the compiled single-row INSERT (values
    through the columns' bind processors, as in `execute_many`). Autoincrement ids grow in the rows' order
    within one INSERT, so the ids sorted are the rows' ids in order (SQLAlchemy's own assumption for
    MariaDB's RETURNING); their number is checked."""
    conn = session.connection()
    dialect = conn.dialect
    stmt = _statement(table, "insert")
    plan = _cached_plan(stmt, dialect, tuple(rows[0]))
    if plan is None or " VALUES " not in plan[0]:
        return list(session.execute(_statement(table, "returning-in-order"), rows).scalars().all())
    sql, binds = plan
    head, _, group = sql.partition(" VALUES ")
    quoted_id = dialect.identifier_preparer.quote(table.c.id.name)
    many = f"{head} VALUES {_values_text(conn.connection.dbapi_connection, group, binds, rows)} RETURNING {quoted_id}"
    ids = sorted(row[0] for row in driver_rows(conn, many))
    if len(ids) != len(rows):
        raise RuntimeError(f"{table.name}: {len(ids)} ids returned for {len(rows)} rows")
    return ids


Binds = list[tuple[str, Any, Any]]  # (column, bind processor or None, default maker or None)


def _plan(stmt: Any, dialect: Any, columns: tuple[str, ...]) -> tuple[str, Binds] | None:
    """The statement's SQL for these columns and how each parameter is made from a row: its value through the
    column's bind processor, or the column's Python-side default when the rows leave it out (as SQLAlchemy
    does, once a row). None when a parameter is neither (SQLAlchemy runs the statement then)."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    names, sql = compiled.positiontup, compiled.string
    if names is None:  # PyMySQL's `%(name)s`: made positional (`%s`), so rows go as tuples
        if dialect.paramstyle != "pyformat":
            return None
        names = _NAMED.findall(sql)
        sql = _NAMED.sub("%s", sql)
    defaults = {column.key: column.default for column in compiled.insert_prefetch}
    binds: Binds = []
    for name in names:
        make = None
        if name not in columns:
            make = _default_maker(defaults.get(name)) or _literal_maker(compiled.binds[name])
            if make is None:
                return None
        bind_type = compiled.binds[name].type
        if isinstance(bind_type, UTCDateTime) and dialect.name != "sqlite":
            process: Any = datetime_text  # DATETIME(6) reads the text; PyMySQL then only doubles quotes
        else:
            process = bind_type.dialect_impl(dialect).bind_processor(dialect)
        binds.append((name, process, make))
    return sql, binds


_NAMED = re.compile(r"%\((\w+)\)s")


def _default_maker(default: Any) -> Callable[[], Any] | None:
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        call = default.arg
        try:
            call(None)  # a default that needs SQLAlchemy's execution context is left to SQLAlchemy
        except Exception:  # noqa: BLE001 - whatever it raises, SQLAlchemy's own path is the answer
            return None
        return lambda: call(None)
    return None


def _literal_maker(bind: Any) -> Callable[[], Any] | None:
    """A value the statement itself carries (`version + 1` binds the 1)."""
    if bind.required or bind.callable is not None or bind.value is None:
        return None
    value = bind.value
    return lambda: value


def _row_values(binds: Binds, row: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for name, process, make in binds:
        value = row[name] if make is None else make()
        out.append(value if process is None else process(value))
    return tuple(out)


def row_literals(dbapi: Any) -> Callable[[tuple[Any, ...]], str] | None:
    """Rows of values as SQL text, `(v1,v2,...)`, the very text PyMySQL's `mogrify` makes of them, at a quarter
    of its cost: strings, integers, NULLs, amounts (Decimal) and flags (nearly every value a write carries)
    are rendered here, without PyMySQL's dispatch per value; anything else goes through the connection's own
    `escape`. Only while the session runs with NO_BACKSLASH_ESCAPES (domain/db.py), where a string literal
    only doubles its single quotes, as PyMySQL does then; None otherwise (the caller uses `mogrify`)."""
    if not getattr(dbapi, "server_status", 0) & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return None
    escape = dbapi.escape
    known: dict[type, Callable[[Any], str]] = {
        str: lambda v: "'" + v.replace("'", "''") + "'",
        type(None): lambda _v: "NULL",
        SqlText: str.__str__,  # an expression of the statement itself, written as it is
    }
    if dbapi.encoders.get(int) is escape_int:
        known[int] = int.__repr__
    # Money and flags, PyMySQL's own text for them (`Decimal2Literal`, `escape_bool`); a NaN or an infinity
    # goes to PyMySQL, which refuses it.
    if dbapi.encoders.get(Decimal) is Decimal2Literal:
        known[Decimal] = lambda v: format(v, "f") if v.is_finite() else escape(v)
    if dbapi.encoders.get(bool) is escape_bool:
        known[bool] = lambda v: "1" if v else "0"
    get = known.get

    def row(values: tuple[Any, ...]) -> str:
        return "(" + ",".join([get(v.__class__, escape)(v) for v in values]) + ")"

    return row


_PLAIN_GROUP = re.compile(r"\(%s(?:, ?%s)*\)")


def _values_text(dbapi: Any, group: str, binds: Binds, rows: list[dict[str, Any]]) -> str:
    """The rows of a multi-row INSERT as its VALUES text, `(...),(...)`: each row's values through its
    columns' bind processors into `group` (the statement's one-row `(%s, ...)`), rendered by `row_literals`
    where it applies, else by PyMySQL's `mogrify`."""
    literal = row_literals(dbapi) if _PLAIN_GROUP.fullmatch(group) else None
    if literal is not None:
        return ",".join([literal(_row_values(binds, r)) for r in rows])
    if any(isinstance(v, SqlText) for r in rows for v in r.values()):
        raise NotOneTrip("a row holding an SQL expression needs row_literals")
    mogrify = dbapi.cursor().mogrify
    return ",".join([mogrify(group, _row_values(binds, r)) for r in rows])


class SqlText(str):
    """A value that is an SQL expression of the statement that writes it (`lpg_f + 1`), rendered as it is:
    only by `row_literals`, inside the one-trip compound statement (`_write_in_one_trip`)."""


class NotOneTrip(Exception):
    """The one-trip compound statement cannot carry these writes (raised before anything is sent)."""


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(table: Table, kind: str) -> Any:
    """A table's INSERT statements, built once per process (building one costs more than running it)."""
    stmt = _STATEMENTS.get((table.name, kind))
    if stmt is None:
        stmt = insert(table)
        if kind == "returning-in-order":
            stmt = stmt.returning(table.c.id, sort_by_parameter_order=True)
        elif kind == "returning":
            stmt = stmt.returning(table.c.id)
        _STATEMENTS[(table.name, kind)] = stmt
    return stmt


def flush_all(session: Session, *, late: bool = False, id_tokens: bool = False) -> None:
    """Staged rows, then the ORM's pending objects: after this every new record of the unit has its id.

    With `late`, the changed rows of the models registered by `write_late` are not flushed: their UPDATEs
    go under the late lock with the unit's other locked writes (on MariaDB, in the same round trip as the
    COMMIT's writes), each required to change its one row. Only for a unit that reads none of them again
    by SQL before its commit and whose caller handles a refusal of those writes at the commit (the sync
    reconciler's fast path: it then applies the batch again, change by change). With `id_tokens` as well,
    single new rows wait for the late lock's statement too, their ids tokens until then (`write_staged`): for
    the unit's last flush only, where nothing reads the new rows back before the commit."""
    write_staged(session, late=late, id_tokens=late and id_tokens)
    if late:
        _defer_updates(session)
    session.flush()


_LATE_MODELS: list[type] = []
_LATE_TABLES: set[Table] = set()
_UPDATES: dict[tuple[str, tuple[str, ...]], Any] = {}


def write_late(*targets: type | Table) -> None:
    """Register what `flush_all(late=True)` writes under the late lock. A model: its changed rows, rows each
    unit has locked (`SELECT ... FOR UPDATE`) and changes in place, such as stock rows. A table: its staged
    rows, rows whose ids nothing reads and nothing refers to, such as a sale's lines."""
    for target in targets:
        if isinstance(target, Table):
            _LATE_TABLES.add(target)
        elif target not in _LATE_MODELS:
            _LATE_MODELS.append(target)


def _defer_updates(session: Session) -> None:
    models = tuple(_LATE_MODELS)
    for obj in list(session.dirty):
        if not isinstance(obj, models):
            continue
        state = inspect(obj)
        changed = {}
        for attr in state.mapper.column_attrs:
            history = state.attrs[attr.key].history
            if history.added:
                changed[attr.key] = history.added[0]
        if not changed:
            continue
        table = state.mapper.local_table
        keys = tuple(sorted(changed))
        stmt = _UPDATES.get((table.name, keys))
        if stmt is None:
            stmt = _UPDATES[(table.name, keys)] = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({table.c[key]: bindparam(f"b_{key}") for key in keys})
            )
        params = {f"b_{key}": value for key, value in changed.items()}
        params["b_id"] = state.identity[0]
        update_one_after_numbers(session, stmt, params, f"{table.name} {params['b_id']} is gone")
        for key, value in changed.items():  # written by the commit: nothing left for the ORM to flush
            set_committed_value(obj, key, value)
        # Off the session's list of modified objects too, as a flush leaves it (SQLAlchemy's own call after
        # a flush; pinned version): otherwise each later flush runs the ORM's unit of work over these rows
        # only to find nothing to write (~0.3 ms a sale).
        if not state.mapper.relationships:  # column changes only: all of them are in the UPDATE above
            state._commit_all(state.dict, session.identity_map)


@event.listens_for(Session, "before_flush")
def _staged_rows_first(session: Session, _context: Any, _instances: Any) -> None:
    """An ORM flush may carry rows that refer to staged ones: write those first (with their real ids)."""
    write_staged(session)
    resolve_ids(session)


def target_id(target: Target) -> int | None:
    return target if target is None or isinstance(target, int) else target.id


def _resolve(value: Callable[[], Doc] | Doc | None) -> Doc:
    if value is None:
        return {}
    return value() if callable(value) else value


def dumps(doc: Any) -> str:
    """The one canonical JSON form: sorted keys, no spaces, UTF-8 kept as is."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def audit_hash(
    entry_id: int,
    at: datetime,
    user_id: int | None,
    device_id: str | None,
    action: str,
    entity_type: str,
    entity_id: int | None,
    context: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical serialisation of an entry and the previous entry's hash: the JSON array
    `[entry_id, at, user_id, device_id, action, entity_type, entity_id, context, prev_hash]` as orjson writes
    it (no spaces), put together around `_audit_fields`, which the one-trip statement hashes too."""
    fields = _audit_fields(at, user_id, device_id, action, entity_type, entity_id, context)
    canonical = b"[" + orjson.dumps(entry_id) + b"," + fields + b"," + orjson.dumps(prev_hash) + b"]"
    return hashlib.sha256(canonical).hexdigest()


AUDIT_FIELDS = ("at", "user_id", "device_id", "action", "entity_type", "entity_id", "context")


def _audit_fields(*values: Any) -> bytes:
    """The middle of `audit_hash`'s canonical text, the entry's `AUDIT_FIELDS` (`at` as RFC 3339) joined by
    commas as JSON: what comes between `[<id>,` and `,"<prev hash>"]`."""
    at, *rest = values
    return orjson.dumps([rfc3339(at), *rest])[1:-1]


def settle_audits(session: Session) -> None:
    """Freeze the audit contexts recorded so far, built from the records' state now (after a flush).

    A context given as a callable is otherwise built at commit, from the records' *final* state in the
    transaction: right for one change per transaction, wrong when one transaction changes a record twice
    (a sync batch), where the first entry would show the second change's result as its `after`. Whoever
    applies several changes in one transaction calls this after each change.
    """
    ledger = _ledger_if_any(session)
    if ledger is None:
        return
    unsettled = ledger.audits[ledger.settled :]
    ledger.settled = len(ledger.audits)
    if not any(callable(a.context) for a in unsettled):
        return
    flush_all(session)
    for pending in unsettled:
        if callable(pending.context):
            pending.context = pending.context()


def write_ledger(session: Session, commit: bool = False) -> None:
    """Turn the recorded changes and audit entries into feed rows and chained audit rows, and the tokens
    into document numbers (steps 1-5). `commit`: the caller commits right after, and nothing else runs in
    the transaction (`LockedWrites.send` may then commit in the last writes' round trip)."""
    ledger = _ledger_if_any(session)
    # 1. Every new record gets its id.
    flush_all(session)
    if ledger is None:
        return
    if not (ledger.changes or ledger.audits):  # new rows waiting for the statement below, which will not run
        resolve_ids(session)
    if not (ledger.changes or ledger.audits or ledger.numbers):  # nothing to lock for: only the deferred
        if ledger.deferred:
            _write_locked(LockedWrites(session), ledger, [], [], {}, None, commit)
        return
    # 2. Documents and contexts, built from the records' final state in this transaction.
    feed_rows = _feed_rows(ledger.changes)
    audit_rows: list[dict[str, Any]] = [
        {
            "at": a.at,
            "user_id": a.user_id,
            "device_id": a.device_id,
            "action": a.action,
            "entity_type": a.entity_type,
            "entity_id": target_id(a.target),
            "context": dumps(_resolve(a.context)),
        }
        for a in ledger.audits
    ]
    # 3. The late lock: every counter row the transaction moves, in one statement, in the key's order. On
    # MariaDB a small unit (document numbers included) takes it inside its writes' own statement instead.
    if _one_trip_fits(feed_rows, audit_rows, ledger.numbers):
        try:
            _write_in_one_trip(LockedWrites(session, single=True), ledger, feed_rows, audit_rows, commit)
            return
        except NotOneTrip:
            pass  # nothing was sent, no row changed: the usual two round trips below
    if ledger.ids:  # the new rows' ids, before the lock (the rows built so far hold their tokens)
        ids = resolve_ids(session)
        feed_rows, audit_rows = with_ids(feed_rows, ids), with_ids(audit_rows, ids)
    counters = _lock_counters(session, ledger)
    writes = LockedWrites(session)  # from here to the COMMIT: one round trip on MariaDB
    # Counter rows this transaction moves, written by one statement at the end: name -> value.
    moved: dict[str, int] = {}
    if ledger.numbers:  # the tokens become numbers: in the rows, the documents, the contexts
        last = {name: int(value) for name, (value, _head) in counters.items()}
        numbers = _assign(ledger.numbers, last)
        moved.update({series: last[series] for series, _ in ledger.numbers})
        writes.renames(ledger.sinks, numbers)
        for row in feed_rows:
            row["doc"] = with_numbers(row["doc"], numbers)
        for row in audit_rows:
            row["context"] = with_numbers(row["context"], numbers)
        ledger.deferred = [(stmt, with_numbers(rows, numbers), moved) for stmt, rows, moved in ledger.deferred]
        _number_in_memory(session, ledger, numbers)
        unit_state(session).numbered = numbers
    # 4. Consecutive seqs and audit ids; each audit entry linked to the previous one.
    seq = counters[FEED_COUNTER][0]
    for row in feed_rows:
        seq += 1
        row["seq"] = seq
    unit_state(session).last_seq = seq
    head = None
    if audit_rows:
        entry_id, prev = counters[AUDIT_COUNTER][0], counters[AUDIT_COUNTER][1] or GENESIS_HASH
        for row in audit_rows:
            entry_id += 1
            row["id"], row["prev_hash"] = entry_id, prev
            row["hash"] = prev = audit_hash(
                entry_id,
                row["at"],
                row["user_id"],
                row["device_id"],
                row["action"],
                row["entity_type"],
                row["entity_id"],
                row["context"],
                prev,
            )
        moved[AUDIT_COUNTER], head = entry_id, prev
    if feed_rows:
        moved[FEED_COUNTER] = seq
    _write_locked(writes, ledger, feed_rows, audit_rows, moved, head, commit)


def _write_locked(
    writes: LockedWrites,
    ledger: Ledger,
    feed_rows: list[dict[str, Any]],
    audit_rows: list[dict[str, Any]],
    moved: dict[str, int],
    head: str | None,
    commit: bool,
) -> None:
    """5. The deferred writes and the multi-row writes, then the counters move (one statement for all of
    them); on MariaDB all in one round trip."""
    writes.deferred(ledger.deferred)
    _upsert_feed(writes, feed_rows, ledger)
    writes.rows(_statement(AUDIT_TABLE, "insert"), audit_rows)
    writes.counters(moved, head)
    writes.send(commit=commit)
    ledger.clear()


# The error a failed `LockedWrites.update_one` check raises on MariaDB: a user-defined error number, from
# the range MariaDB leaves free for SIGNAL (its own end below 5000), and the message's length limit.
_MOVED_ERRNO = 5501
MOVED_TEXT = 128

_LATE_LOCK = (
    select(Counter.name, Counter.value, Counter.head)
    .where(Counter.name.in_((AUDIT_COUNTER, FEED_COUNTER)))
    .order_by(Counter.name)
    .with_for_update()
)
_LATE_LOCK_WITH_SERIES = (
    select(Counter.name, Counter.value, Counter.head)
    .where(Counter.name.in_(bindparam("names", expanding=True)))
    .order_by(Counter.name)
    .with_for_update()
)
_NEW_SERIES = {
    "sqlite": text("INSERT INTO counters (name, value) VALUES (:name, 0) ON CONFLICT(name) DO NOTHING"),
    "mysql": text("INSERT INTO counters (name, value) VALUES (:name, 0) ON DUPLICATE KEY UPDATE value = value"),
}


class LockedWrites:
    """The writes between the late lock and the COMMIT, while every writer waits for the counter rows.

    On MariaDB they are one round trip: each statement is rendered with its values (PyMySQL's own
    escaping, as `executemany` does, under the session's NO_BACKSLASH_ESCAPES) and all of them go as one
    anonymous compound statement, `BEGIN NOT ATOMIC ...; ...; END` (MariaDB 10.1+; one statement for the
    server, so an error in any of them is the statement's error and the unit rolls back). The counter rows
    are then held for three round trips (the lock, the writes, the COMMIT) instead of one per statement;
    under load each round trip also waits for the worker's GIL, which is what the holder's time was made
    of. SQLite has no round trips: there (and on MySQL) each write runs at once."""

    LIMIT = 4 << 20  # characters per round trip, well under max_allowed_packet (16 MiB by default)

    def __init__(self, session: Session, single: bool = False) -> None:
        self.session = session
        self.single = single  # everything in one statement, or `NotOneTrip` before anything is sent
        self.conn = session.connection()
        self.dialect = self.conn.dialect
        # MariaDB only: MySQL has no anonymous compound statement (there each write goes on its own).
        self.batched = bool(getattr(self.dialect, "is_mariadb", False))
        self.parts: list[str] = []
        self.size = 0
        self.compound = False
        self.cursor: Any = None
        if self.batched:
            dbapi = self.conn.connection.dbapi_connection
            self.cursor = dbapi.cursor() if dbapi is not None else None
            self.batched = hasattr(self.cursor, "mogrify")
        self.quote = self.dialect.identifier_preparer.quote

    def rows(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """A fixed INSERT (or upsert) of many rows with the same columns (see `execute_many`)."""
        if not rows:
            return
        if self.batched:
            plan = _cached_plan(stmt, self.dialect, tuple(rows[0]))
            found = RE_INSERT_VALUES.match(plan[0]) if plan is not None else None
            if plan is not None and found is not None:
                head, group, tail = found.group(1), found.group(2).rstrip(), found.group(3) or ""
                for chunk in _chunks(rows):
                    self._add(head + _values_text(self.cursor.connection, group, plan[1], chunk) + tail)
                return
            self.send()  # a statement SQLAlchemy must run: what came before goes first
        for chunk in _chunks(rows):
            execute_many(self.session, stmt, chunk)

    def deferred(self, writes: list[Deferred]) -> None:
        for stmt, rows, moved in writes:
            if moved is None:
                self.rows(stmt, rows)
            else:
                for params in rows:
                    self.update_one(stmt, params, moved)

    def update_one(self, stmt: Any, params: dict[str, Any], moved: str) -> None:
        """An UPDATE that must change exactly one row (`RowMoved(moved)` otherwise). On MariaDB the check
        runs in the compound statement: `ROW_COUNT()` after the UPDATE, and a SIGNAL that fails the whole
        statement; the UPDATE must change the row it finds (a version bump does), since ROW_COUNT() counts
        changed rows."""
        plan = _cached_plan(stmt, self.dialect, tuple(params)) if self.batched else None
        if plan is None:
            self.send()
            if self.session.execute(stmt, params).rowcount != 1:  # type: ignore[attr-defined]
                raise RowMoved(moved)
            return
        update_sql = self.cursor.mogrify(plan[0], _row_values(plan[1], params))
        signal = self.cursor.mogrify(
            "IF ROW_COUNT() <> 1 THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = %s, MESSAGE_TEXT = %s; END IF",
            (_MOVED_ERRNO, moved[:MOVED_TEXT]),
        )
        self._add(update_sql)
        self._add(signal, compound=True)

    def renames(self, sinks: list[tuple[Column[Any], str]], numbers: dict[str, str]) -> None:
        """Rewrite every column written with tokens: one UPDATE per column (a CASE for many rows)."""
        if not self.batched:
            _write_numbers(self.session, sinks, numbers)
            return
        for column, chunk in _renames(sinks, numbers):
            table, name = self.quote(column.table.name), self.quote(column.name)  # type: ignore[attr-defined]
            cases = " ".join(["WHEN %s THEN %s"] * len(chunk))
            sql = f"UPDATE {table} SET {name} = CASE {name} {cases} END WHERE {name} IN ({', '.join(['%s'] * len(chunk))})"
            self._add(self.cursor.mogrify(sql, [v for pair in chunk for v in pair] + [old for old, _ in chunk]))

    def counters(self, moved: Mapping[str, int | str], audit_head: str | None) -> None:
        """One UPDATE for every counter row the transaction moves (all of them locked by it already). A
        value may be an `SqlText` of the one-trip statement (`lpg_f + 1`), written as it is."""
        if not self.batched:
            _move_counters(self.session, moved, audit_head)  # type: ignore[arg-type]  # ints off MariaDB
            return
        if not moved:
            return
        args: list[Any] = []

        def slot(value: Any) -> str:
            if isinstance(value, SqlText):
                return str(value)
            args.append(value)
            return "%s"

        names = list(moved)
        cases = " ".join(f"WHEN {slot(name)} THEN {slot(moved[name])}" for name in names)
        sql = f"UPDATE counters SET value = CASE name {cases} END"
        if audit_head is not None:
            sql += f", head = CASE WHEN name = {slot(AUDIT_COUNTER)} THEN {slot(audit_head)} ELSE head END"
        sql += f" WHERE name IN ({', '.join(slot(n) for n in names)})"
        self._add(self.cursor.mogrify(sql, args))

    def _add(self, sql: str, compound: bool = False) -> None:
        """One more statement; `compound` for one that follows its UPDATE (the same round trip) and is valid
        only inside `BEGIN NOT ATOMIC ... END`."""
        if self.parts and self.size + len(sql) > self.LIMIT and not compound and not self.single:
            self.send()
        self.parts.append(sql)
        self.size += len(sql)
        self.compound = self.compound or compound

    def send(self, commit: bool = False, *, last: bool = False) -> list[tuple[Any, ...]]:
        """The statements gathered so far, in one round trip.

        `commit` (the unit's last writes, its COMMIT next): on MariaDB the COMMIT ends the same compound
        statement, unless the ORM still holds changes its commit would flush or a `before_commit` hook
        is listening. The server then releases the
        counter rows every writer waits for as soon as the writes are done, not after one more round trip
        that first waits for this worker's GIL; the unit's own COMMIT finds the transaction ended and sends
        nothing (`domain.db.skip_ended_commit`). Should the statement fail, nothing of it is committed
        (its statements and the COMMIT are one statement for the server), except when the connection is
        lost while it runs: its outcome is then unknown, as a lost COMMIT's is (`dbfaults`).

        The rows of the statement's first result come back (the one-trip statement's `SELECT`). A `single`
        writer sends only its `last` call: any earlier one (a write SQLAlchemy must run on its own) raises
        `NotOneTrip` with nothing sent."""
        if self.single and not last:
            raise NotOneTrip("a write that must run on its own")
        if not self.parts:
            return []
        session = self.session
        # Nothing may run in the transaction after its COMMIT: no flush, and no `before_commit` hook (one
        # that writes or fails would find the transaction already committed).
        fold = (
            commit
            and self.batched
            and not (session.new or session.dirty or session.deleted)
            and not session.dispatch.before_commit
        )
        if fold:
            self.parts.append("COMMIT")
        if len(self.parts) == 1 and not self.compound:
            sql = self.parts[0]
        else:
            sql = "BEGIN NOT ATOMIC\n" + ";\n".join(self.parts) + ";\nEND"
        self.parts, self.size, self.compound = [], 0, False
        try:
            rows = driver_rows(self.conn, sql)
        except DBAPIError as exc:
            if fold:
                mark_during_commit(exc)
            code, message = (getattr(exc.orig, "args", None) or (None, ""))[:2]
            if code == _MOVED_ERRNO:
                raise RowMoved(str(message)) from exc
            raise
        if fold:
            committed_in_statement(self.cursor.connection)
        return rows


# A unit takes the one-trip path with at most this many feed and audit rows and this much document and
# context text (the statement is never split: it holds its variables).
ONE_TRIP_ROWS = 20
ONE_TRIP_TEXT = 1 << 20


def _one_trip_fits(
    feed_rows: list[dict[str, Any]], audit_rows: list[dict[str, Any]], numbers: list[tuple[str, str]]
) -> bool:
    if len(feed_rows) > ONE_TRIP_ROWS or len(audit_rows) > ONE_TRIP_ROWS or not (feed_rows or audit_rows):
        return False
    if len(numbers) > ONE_TRIP_ROWS:
        return False
    size = sum(len(r["doc"]) for r in feed_rows) + sum(len(r["context"]) for r in audit_rows)
    return size <= ONE_TRIP_TEXT


def _write_in_one_trip(
    writes: LockedWrites,
    ledger: Ledger,
    feed_rows: list[dict[str, Any]],
    audit_rows: list[dict[str, Any]],
    commit: bool,
) -> None:
    """MariaDB, a small unit (most pushes, a sale included): the late lock, the document numbers, the seqs,
    the audit chain and every locked write in one compound statement, ended by the COMMIT when it may be.

    The two-trip path locks the counter rows, computes the numbers, seqs and hashes in Python and sends the
    writes: every writer then waits on those rows for a round trip plus however long the holder's thread
    waits for its worker's GIL, which under a fleet's load was the whole bound (the holder's time, ~3 ms a
    push, capped all processes together). Here the server holds them only while it runs the statement:

        DECLARE lpg_a, lpg_f, lpg_s<series>, lpg_n<token>, lpg_h0..lpg_hN;
        SELECT <audit value>, <audit head>, <feed value>, <each series' value> INTO ... FOR UPDATE;
        IF lpg_sK IS NULL THEN <the series' row at zero>; SELECT value INTO lpg_sK ... FOR UPDATE; END IF;
        SET lpg_nI = CONCAT('<series>-', LPAD(lpg_sK + J, ...));           -- the tokens' numbers
        SET lpg_hK = SHA2(CONCAT('[', lpg_a + K, ',', REPLACE('<entry K as canonical JSON>', '<token>',
                          lpg_nI), ',"', lpg_hK-1, '"]'), 256);
        UPDATE <a table> SET number = CASE number WHEN '<token>' THEN lpg_nI END WHERE number IN (...);
        <the deferred writes>; <the feed rows, seq lpg_f + K>; <the audit rows, id lpg_a + K>;
        UPDATE counters ...; SELECT lpg_f + <feed rows>, lpg_n1, ...; [COMMIT;]

    Every text that names a token (a document, an audit context, a stored answer, a Message-ID) is sent
    with the token and written through `REPLACE(text, token, lpg_nI)`: the same text `with_numbers` makes
    (tokens and numbers are plain ASCII, so JSON escapes nothing in either). Numbers are given as `_assign`
    gives them: per series, in the order the tokens were handed out, from the locked counter on; a series'
    first use in a year creates its row at zero and locks it, as `_lock_counters` does.

    The hash is `audit_hash`'s, byte for byte: the entry's fields are the same canonical JSON text
    (`_audit_fields`), quoted by doubling (NO_BACKSLASH_ESCAPES), hashed as UTF-8 (utf8mb4 variables and
    connection); `tests/audit/test_integration_one_trip_chain.py` checks it against Python's. The counter rows
    are read in their key's order by the same index as the two-trip lock, so writers never wait in a circle.
    Nothing of `feed_rows`, `audit_rows` or the ledger is changed before the statement is sent: on
    `NotOneTrip` the two-trip path takes them as they were."""
    quote = row_literals(writes.cursor.connection) if writes.batched else None
    if quote is None:
        raise NotOneTrip("needs MariaDB's compound statement and NO_BACKSLASH_ESCAPES")

    def literal(value: str) -> str:
        return quote((value,))[1:-1]

    feed_rows = [dict(row) for row in feed_rows]
    audit_rows = [dict(row) for row in audit_rows]
    series = sorted({name for name, _ in ledger.numbers})
    tokens = [token for _, token in ledger.numbers]
    slot = {token: f"lpg_n{i}" for i, token in enumerate(tokens)}
    chain = list(ledger.ids)  # new rows inserted here, their ids tokens until then
    id_slot: dict[int, SqlText] = {row.id: SqlText(f"lpg_i{k}") for k, row in enumerate(chain)}  # type: ignore[misc]
    id_digits = [(str(token), name) for token, name in id_slot.items()]

    def named(value: str) -> bool:
        return (bool(tokens) and TOKEN_MARK in value) or any(digits in value for digits, _ in id_digits)

    def numbered(value: str) -> str:
        """SQL for `value` with every token of this unit replaced by its number or id (a literal if none)."""
        sql = literal(value)
        if TOKEN_MARK in value:
            for token in dict.fromkeys(_TOKEN.findall(value)):
                if token in slot:
                    sql = f"REPLACE({sql}, {literal(token)}, {slot[token]})"
        for digits, name in id_digits:
            if digits in value:
                sql = f"REPLACE({sql}, '{digits}', {name})"
        return sql

    def numbered_row(row: dict[str, Any]) -> dict[str, Any]:
        if not (tokens or id_slot):
            return row
        out = {}
        for key, value in row.items():
            if value.__class__ is int and value in id_slot:
                value = id_slot[value]
            elif isinstance(value, str) and named(value):
                value = SqlText(numbered(value))
            out[key] = value
        return out

    n_audit, n_feed = len(audit_rows), len(feed_rows)
    prelude = [f"DECLARE lpg_i{k} BIGINT" for k in range(len(chain))]
    prelude += ["DECLARE lpg_a BIGINT", "DECLARE lpg_f BIGINT"]
    prelude += [f"DECLARE lpg_s{k} BIGINT" for k in range(len(series))]
    prelude += [f"DECLARE {slot[token]} VARCHAR(64) CHARACTER SET utf8mb4" for token in tokens]
    prelude += [f"DECLARE lpg_h{k} VARCHAR(64) CHARACTER SET utf8mb4" for k in range(n_audit + 1)]
    for sql in prelude:
        writes._add(sql, compound=True)
    prelude = []
    for k, new_row in enumerate(chain):  # the new rows first, as when they had their own round trip
        # References to the rows before it by their variables; a document number stays its token here (the
        # number is given under the lock below, and the column renamed there).
        params = {key: id_slot.get(v, v) if v.__class__ is int else v for key, v in new_row.params().items()}
        _insert_one(writes, new_row.table, params, f"lpg_i{k}")
    names = quote(tuple(sorted({AUDIT_COUNTER, FEED_COUNTER, *series})))
    audit_name, feed_name = literal(AUDIT_COUNTER), literal(FEED_COUNTER)
    series_values = "".join(f", MAX(CASE WHEN name = {literal(name)} THEN value END)" for name in series)
    series_into = "".join(f", lpg_s{k}" for k in range(len(series)))
    prelude.append(
        f"SELECT MAX(CASE WHEN name = {audit_name} THEN value END), MAX(CASE WHEN name = {audit_name} THEN head END),"
        f" MAX(CASE WHEN name = {feed_name} THEN value END){series_values} INTO lpg_a, lpg_h0, lpg_f{series_into}"
        f" FROM counters WHERE name IN {names} FOR UPDATE"
    )
    prelude.append(f"SET lpg_h0 = COALESCE(NULLIF(lpg_h0, ''), {literal(GENESIS_HASH)})")
    moved: dict[str, int | str] = {}
    given: dict[str, int] = {}
    for k, name in enumerate(series):  # a series' first use in a year: its row at zero, then locked
        prelude.append(
            f"IF lpg_s{k} IS NULL THEN INSERT INTO counters (name, value) VALUES ({literal(name)}, 0)"
            f" ON DUPLICATE KEY UPDATE value = value; SELECT value INTO lpg_s{k} FROM counters"
            f" WHERE name = {literal(name)} FOR UPDATE; END IF"
        )
    for name, token in ledger.numbers:
        k = series.index(name)
        given[name] = given.get(name, 0) + 1
        value = f"lpg_s{k} + {given[name]}"
        prelude.append(
            f"SET {slot[token]} = CONCAT({literal(name + '-')}, LPAD({value}, GREATEST(6, CHAR_LENGTH({value})), '0'))"
        )
    for k, name in enumerate(series):
        moved[name] = SqlText(f"lpg_s{k} + {given[name]}")
    for k, row in enumerate(audit_rows, 1):
        fields = numbered(_audit_fields(*(row[name] for name in AUDIT_FIELDS)).decode())
        prelude.append(f"SET lpg_h{k} = SHA2(CONCAT('[', lpg_a + {k}, ',', {fields}, ',\"', lpg_h{k - 1}, '\"]'), 256)")
        row.update(numbered_row(row))
        row["id"], row["prev_hash"], row["hash"] = (
            SqlText(f"lpg_a + {k}"),
            SqlText(f"lpg_h{k - 1}"),
            SqlText(f"lpg_h{k}"),
        )
    for k, row in enumerate(feed_rows, 1):
        row.update(numbered_row(row))
        row["seq"] = SqlText(f"lpg_f + {k}")
    for sql in prelude:
        writes._add(sql, compound=True)
    for column, chunk in _renames(ledger.sinks, {}):  # each column written with tokens: one UPDATE
        table, name = writes.quote(column.table.name), writes.quote(column.name)  # type: ignore[attr-defined]
        cases = " ".join(f"WHEN {literal(old)} THEN {numbered(old)}" for old, _ in chunk)
        olds = ", ".join(literal(old) for old, _ in chunk)
        writes._add(f"UPDATE {table} SET {name} = CASE {name} {cases} END WHERE {name} IN ({olds})")
    deferred: list[Deferred] = []
    for stmt, values, moved_row in ledger.deferred:
        if moved_row is not None:  # an UPDATE's values go through PyMySQL's escaping: no SQL expression there
            if any(numbered_row(row) != row for row in values):
                raise NotOneTrip("an UPDATE whose values name a document number or a new row's id")
            deferred.append((stmt, values, moved_row))
        else:
            deferred.append((stmt, [numbered_row(row) for row in values], moved_row))
    writes.deferred(deferred)
    _upsert_feed(writes, feed_rows, ledger)
    writes.rows(_statement(AUDIT_TABLE, "insert"), audit_rows)
    if n_audit:
        moved[AUDIT_COUNTER] = SqlText(f"lpg_a + {n_audit}")
    if n_feed:
        moved[FEED_COUNTER] = SqlText(f"lpg_f + {n_feed}")
    writes.counters(moved, SqlText(f"lpg_h{n_audit}") if n_audit else None)
    answer = [f"lpg_f + {n_feed}"] + [slot[token] for token in tokens] + list(id_slot.values())
    writes._add("SELECT " + ", ".join(answer), compound=True)
    rows = writes.send(commit=commit, last=True)
    session = writes.session
    unit_state(session).last_seq = int(rows[0][0])
    if chain:
        new_ids = rows[0][1 + len(tokens) :]
        ids = {}
        for r, new_id in zip(chain, new_ids, strict=True):
            ids[int(r.id)], r.id = int(new_id), int(new_id)  # type: ignore[arg-type]
        _ids_in_place(session, ledger, ids)  # the deferred writes are done: `ledger.clear()` below
    if tokens:
        numbers = dict(zip(tokens, (str(number) for number in rows[0][1 : 1 + len(tokens)]), strict=True))
        _number_in_memory(session, ledger, numbers)
        unit_state(session).numbered = numbers
    ledger.clear()


def _lock_counters(session: Session, ledger: Ledger) -> dict[str, tuple[int, str | None]]:
    """Lock the feed and audit counters and every number series the unit used, by one sorted locking
    read (every writer takes them in the key's order, so two writers never wait for each other in a
    circle). A series' first use creates its row at zero by an atomic upsert, then locks again."""

    def lock(stmt: Any, names: list[str] | None = None) -> dict[str, tuple[int, str | None]]:
        return {
            name: (value, head) for name, value, head in plain_rows(session, stmt, {"names": names} if names else None)
        }

    if not ledger.numbers:
        return lock(_LATE_LOCK)
    names = sorted({AUDIT_COUNTER, FEED_COUNTER, *(series for series, _ in ledger.numbers)})
    counters = lock(_LATE_LOCK_WITH_SERIES, names)
    missing = [name for name in names if name not in counters]
    if missing:  # once per series and business year
        dialect = "sqlite" if session.get_bind().dialect.name == "sqlite" else "mysql"
        for name in missing:
            session.execute(_NEW_SERIES[dialect], {"name": name})
        counters = lock(_LATE_LOCK_WITH_SERIES, names)
    return counters


def _move_counters(session: Session, moved: dict[str, int], audit_head: str | None) -> None:
    """One UPDATE for every counter row the transaction moves (all of them locked by it already)."""
    if not moved:
        return
    if audit_head is not None and moved.keys() == {AUDIT_COUNTER, FEED_COUNTER}:  # a push's usual case
        session.execute(
            _MOVE_FEED_AND_AUDIT, {"feed": moved[FEED_COUNTER], "audit": moved[AUDIT_COUNTER], "head": audit_head}
        )
        return
    table: Table = Counter.__table__  # type: ignore[assignment]
    column = table.c
    values: dict[str, Any] = {"value": case(moved, value=column.name) if len(moved) > 1 else next(iter(moved.values()))}
    if audit_head is not None:
        values["head"] = case((column.name == AUDIT_COUNTER, audit_head), else_=column.head)
    session.execute(update(table).where(column.name.in_(list(moved))).values(values))


def _move_feed_and_audit_statement() -> Any:
    table: Table = Counter.__table__  # type: ignore[assignment]
    column = table.c
    return (
        update(table)
        .where(column.name.in_((AUDIT_COUNTER, FEED_COUNTER)))
        .values(
            value=case((column.name == FEED_COUNTER, bindparam("feed")), else_=bindparam("audit")),
            head=case((column.name == AUDIT_COUNTER, bindparam("head")), else_=column.head),
        )
    )


_MOVE_FEED_AND_AUDIT = _move_feed_and_audit_statement()


def _feed_rows(changes: Iterable[PendingChange]) -> list[dict[str, Any]]:
    """One row per record, the last recorded state wins, in the order records were first touched."""
    latest: dict[tuple[str, int], PendingChange] = {}
    for change in changes:
        latest[(change.entity, int(target_id(change.target)))] = change  # type: ignore[arg-type]
    rows = []
    now = utcnow()
    for (entity, entity_id), change in latest.items():
        target = change.target
        version = change.version if change.version is not None else getattr(target, "version", 1)
        modified = change.last_modified or getattr(target, "last_modified", None) or now
        rows.append(
            {
                "entity": entity,
                "entity_id": entity_id,
                "version": version,
                "scope": change.scope,
                "deleted": change.deleted,
                "last_modified": modified,
                "doc": dumps(_resolve(change.doc)),
            }
        )
    return rows


def _upsert_feed(writes: LockedWrites, rows: list[dict[str, Any]], ledger: Ledger) -> None:
    """The feed rows (one per record, the latest state) under the late lock.

    On MariaDB a unit with at least `COUNTED_BY_STATEMENT` rows counts them into `change_feed_counts` itself
    (alembic 0004_feed_counts), while the triggers skip its seqs (the session's `@lpg_feed_lo .. @lpg_feed_hi`):
    the rows its records already have leave their buckets before they move, then all of its rows enter theirs,
    each with one set-based upsert. The triggers' four upserts a row took about a tenth of the database's time
    for a batch of 500 changes. Records staged in this unit are new (their ids were just given by the
    database), so only the others are looked up. Every other feed write resets the range first, so a range
    left behind by a statement that failed never makes the triggers skip a later row."""
    if not rows:
        return
    stmt = _FEED_UPSERT["sqlite" if writes.dialect.name == "sqlite" else "mysql"]
    if not writes.batched:  # SQLite and MySQL: the triggers count
        writes.rows(stmt, rows)
        return
    seqs = [row["seq"] for row in rows]
    if len(rows) < COUNTED_BY_STATEMENT or not all(seq.__class__ is int for seq in seqs):
        writes._add(_NO_FEED_RANGE)
        writes.rows(stmt, rows)
        return
    low, high = min(seqs), max(seqs)
    fresh = {(c.entity, c.target.id) for c in ledger.changes if isinstance(c.target, Staged)}
    by_entity: dict[str, list[int]] = {}
    for row in rows:
        if (row["entity"], row["entity_id"]) not in fresh:
            by_entity.setdefault(row["entity"], []).append(int(row["entity_id"]))
    writes._add(f"SET @lpg_feed_lo = {low}, @lpg_feed_hi = {high}")
    if by_entity:  # the rows these records have now leave their buckets
        records = " OR ".join(
            writes.cursor.mogrify("(entity = %s AND entity_id IN (" + ", ".join(map(str, ids)) + "))", (entity,))
            for entity, ids in by_entity.items()
        )
        writes._add(_count_feed_rows(f"(SELECT scope, entity, seq FROM change_feed WHERE {records})", -1))
    writes.rows(stmt, rows)
    writes._add(_count_feed_rows(f"(SELECT scope, entity, seq FROM change_feed WHERE seq BETWEEN {low} AND {high})", 1))
    writes._add(_NO_FEED_RANGE)


def _count_feed_rows(feed: str, sign: int) -> str:
    """Add (`sign` 1) or take away (-1) the rows of `feed`, a derived table of feed rows, in the counts, as the
    triggers count them: each row in its scope and entity, its scope (entity '*'), its entity (scope -1) and
    overall (-1, '*'), in its bucket of 1024 seqs. An upsert, so the counts table is read by its key only."""
    return (
        "INSERT INTO change_feed_counts (scope, entity, bucket, n) SELECT * FROM (SELECT"
        " IF(k.own_scope, f.scope, -1) AS scope, IF(k.own_entity, f.entity, '*') AS entity,"
        f" f.seq DIV {COUNT_BUCKET} AS bucket, {sign} * COUNT(*) AS delta FROM {feed} f CROSS JOIN"
        " (SELECT 1 AS own_scope, 1 AS own_entity UNION ALL SELECT 1, 0 UNION ALL SELECT 0, 1 UNION ALL SELECT 0, 0) k"
        " GROUP BY 1, 2, 3) d ON DUPLICATE KEY UPDATE n = change_feed_counts.n + d.delta"
    )


# From this many feed rows on, a MariaDB unit counts its rows with two statements instead of the triggers.
COUNTED_BY_STATEMENT = 50
# The triggers count every row again (a unit counting its own rows sets the range to its seqs).
_NO_FEED_RANGE = "SET @lpg_feed_lo = NULL, @lpg_feed_hi = NULL"


def _feed_upserts() -> dict[str, Any]:
    """The feed's upsert per dialect: one fixed statement executed for many rows (built and compiled once;
    the driver sends multi-row batches)."""
    table: Table = FeedEntry.__table__  # type: ignore[assignment]
    columns = ("seq", "version", "scope", "deleted", "last_modified", "doc")
    lite = sqlite_dialect.insert(table)
    maria = mysql_dialect.insert(table)
    return {
        "sqlite": lite.on_conflict_do_update(
            index_elements=["entity", "entity_id"], set_={c: lite.excluded[c] for c in columns}
        ),
        "mysql": maria.on_duplicate_key_update({c: maria.inserted[c] for c in columns}),
    }


_FEED_UPSERT = _feed_upserts()


def _chunks(rows: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


__all__ = [
    "GENESIS_HASH",
    "PUBLIC_SCOPE",
    "Ledger",
    "SharedDoc",
    "Staged",
    "UnitState",
    "audit_hash",
    "dumps",
    "flush_all",
    "given",
    "holds_numbers",
    "late_number",
    "ledger_of",
    "resolve_ids",
    "row_ref",
    "settle_audits",
    "stage",
    "unit_state",
    "with_ids",
    "with_numbers",
    "write_after_numbers",
    "write_late",
    "write_ledger",
]
