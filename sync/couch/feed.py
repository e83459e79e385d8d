"""The change feed as CouchDB documents: pages, documents by id, `_all_docs` ranges; bytes, not objects.

Every read runs in one snapshot (`domain.feed.reader.Snapshot`) and only sees rows at or below the committed
feed counter, like the native pull, so a replicator that resumes from a `last_seq` never skips a change.
Documents are spliced as bytes: `{"_id", "_rev", "_revisions"?` + the stored canonical JSON's members, so a
page of a thousand documents is never parsed. Id lists are read per entity in chunks of `CHUNK` (SQLite
refuses an expression tree of about a thousand OR terms; an `IN` list per entity has no such limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from domain.db import Database
from domain.feed.models import PUBLIC_SCOPE
from domain.feed.reader import Scope, Snapshot, _Cursor, _in, _page_seqs, count_between, current
from domain.feed.services import FEED_ENTITIES
from sync.couch.common import REVS_LIMIT, rev_hash

CHUNK = 500
COLUMNS = "seq, entity, entity_id, version, deleted"
# The stored canonical JSON as bytes straight from the driver (no decode to str and encode back per row).
DOC = {"sqlite": ", CAST(doc AS BLOB)", "mysql": ", CAST(doc AS BINARY)"}


def _columns(db: Database, with_docs: bool) -> str:
    """The feed columns a row is made of (`_row`), with the document when asked for."""
    return COLUMNS + (DOC[db.dialect] if with_docs else "")


class Row(NamedTuple):
    """A feed row as a CouchDB document's head: its id (`entity:digits`), its revision number (the record's
    version, one more for its tombstone) and revision, each made once by `_row` (a replicator's page asks for
    every row's revision, then builds its document from the same parts)."""

    seq: int
    entity: str
    entity_id: int
    version: int
    deleted: bool
    doc: bytes | None
    key: str
    number: int
    digest: str
    rev: str


_new_row = tuple.__new__  # a row from its ten values without NamedTuple's keyword handling (once per row)


def _row(raw: Sequence[Any]) -> Row:
    doc = raw[5] if len(raw) > 5 else None
    if isinstance(doc, str):
        doc = doc.encode()
    elif doc is not None and not isinstance(doc, bytes):  # a memoryview or bytearray from the driver
        doc = bytes(doc)
    entity, entity_id, version, deleted = str(raw[1]), int(raw[2]), int(raw[3]), bool(raw[4])
    key = f"{entity}:{entity_id}"
    n = version + 1 if deleted else version
    digest = rev_hash(key, n)
    return _new_row(Row, (int(raw[0]), entity, entity_id, version, deleted, doc, key, n, digest, f"{n}-{digest}"))


def doc_bytes(row: Row, revs: bool) -> bytes:
    """The CouchDB document of a row (a tombstone when deleted), as JSON bytes (ids are `entity:digits`,
    revision hashes hex: nothing to escape)."""
    key, n, digest = row.key, row.number, row.digest
    head = b'{"_id":"%s","_rev":"%s"' % (key.encode(), row.rev.encode())
    if revs:
        if n == 1:  # a record never updated: its ancestry is itself
            head += b',"_revisions":{"start":1,"ids":["%s"]}' % digest.encode()
        else:
            ids = [digest, *(rev_hash(key, k) for k in range(n - 1, max(0, n - REVS_LIMIT), -1))]
            head += b',"_revisions":{"start":%d,"ids":%s}' % (n, orjson.dumps(ids))
    if row.deleted or row.doc is None:
        return head + b',"_deleted":true}'
    body = row.doc.strip()
    if body == b"{}":
        return head + b"}"
    return head + b"," + body[1:]


def parse_id(doc_id: str) -> tuple[str, int] | None:
    """`entity:digits` (a feed entity, a number without leading zeros, at most 18 digits), or None."""
    found = _ID.fullmatch(doc_id)
    return None if found is None else (found[1], int(found[2]))


_ID = re.compile(r"(%s):(0|[1-9][0-9]{0,17})" % "|".join(re.escape(e) for e in sorted(FEED_ENTITIES)), re.ASCII)


def _scope_sql(user: int | None) -> tuple[str, list[Any]]:
    return ("", []) if user is None else (" AND scope IN (?, ?)", [PUBLIC_SCOPE, user])


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    last_seq: int
    pending: int


def changes_page(db: Database, since: int, limit: int, user: int | None, with_docs: bool) -> Page:
    """The next `limit` rows after `since` in the caller's scope; `last_seq` and `pending` as the native pull."""
    columns = _columns(db, with_docs)
    with Snapshot(db) as cur:
        ceiling = current(cur)
        since = min(since, ceiling)
        if user is None:
            raw = cur.all(
                f"SELECT {columns} FROM change_feed WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                [since, ceiling, limit + 1],
            )
            rows = [_row(r) for r in raw]
            extra = rows[limit].seq if len(rows) > limit else None
            rows = rows[:limit]
        else:
            seqs = _page_seqs(cur, since, ceiling, limit + 1, Scope(user))
            extra = seqs[limit] if len(seqs) > limit else None
            rows = _by_seqs(cur, columns, seqs[:limit])
        if extra is None:
            return Page(rows, ceiling, 0)
        return Page(rows, extra - 1, count_between(cur, extra - 1, ceiling, Scope(user)))


def _by_seqs(cur: _Cursor, columns: str, seqs: list[int]) -> list[Row]:
    rows: list[Row] = []
    for start in range(0, len(seqs), CHUNK):
        part = seqs[start : start + CHUNK]
        rows += [_row(r) for r in cur.all(f"SELECT {columns} FROM change_feed WHERE seq IN {_in(part)}", part)]
    rows.sort(key=lambda r: r.seq)
    return rows


def head_seq(db: Database) -> int:
    with Snapshot(db) as cur:
        return current(cur)


def _grouped(keys: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for entity, number in keys:
        grouped.setdefault(entity, []).append(number)
    return grouped


def rows_by_keys(
    db: Database, keys: Iterable[tuple[str, int]], user: int | None, with_docs: bool
) -> dict[tuple[str, int], Row]:
    """The current rows of these records in the caller's scope (absent: missing or out of scope)."""
    grouped = _grouped(set(keys))
    if not grouped:
        return {}
    columns = _columns(db, with_docs)
    where, params = _scope_sql(user)
    found: dict[tuple[str, int], Row] = {}
    with Snapshot(db) as cur:
        ceiling = current(cur)
        for entity, numbers in grouped.items():
            for start in range(0, len(numbers), CHUNK):
                part = numbers[start : start + CHUNK]
                for raw in cur.all(
                    f"SELECT {columns} FROM change_feed WHERE entity = ? AND entity_id IN {_in(part)}"
                    f" AND seq <= ?{where}",
                    [entity, *part, ceiling, *params],
                ):
                    row = _row(raw)
                    found[(row.entity, row.entity_id)] = row
    return found


def changes_for_keys(
    db: Database, keys: Iterable[tuple[str, int]], since: int, limit: int, user: int | None, with_docs: bool
) -> Page:
    """`filter=_doc_ids`: the rows of these records changed after `since`, in seq order."""
    rows = [r for r in rows_by_keys(db, keys, user, with_docs).values() if r.seq > since]
    rows.sort(key=lambda r: r.seq)
    ceiling = head_seq(db)
    if len(rows) > limit:
        return Page(rows[:limit], rows[limit].seq - 1, len(rows) - limit)
    return Page(rows, max(ceiling, since), 0)


def changes_descending(db: Database, before: int | None, limit: int, user: int | None, with_docs: bool) -> Page:
    """`descending=true`: the newest rows first (below `before` when given)."""
    columns = _columns(db, with_docs)
    where, params = _scope_sql(user)
    with Snapshot(db) as cur:
        ceiling = current(cur)
        top = ceiling if before is None else min(before - 1, ceiling)
        raw = cur.all(
            f"SELECT {columns} FROM change_feed WHERE seq <= ?{where} ORDER BY seq DESC LIMIT ?",
            [top, *params, limit],
        )
    rows = [_row(r) for r in raw]
    return Page(rows, rows[-1].seq if rows else 0, 0)


def _key_sql(dialect: str) -> str:
    if dialect == "sqlite":
        return "(entity || ':' || entity_id)"
    return "CAST(CONCAT(entity, ':', entity_id) AS BINARY)"


@dataclass(frozen=True)
class Range:
    start: str | None = None
    end: str | None = None
    inclusive_end: bool = True
    descending: bool = False
    limit: int | None = None
    skip: int = 0


def all_docs_range(db: Database, r: Range, user: int | None, with_docs: bool) -> tuple[int, list[Row]]:
    """`_all_docs` without keys: live (not deleted) documents in id order (raw byte order, as CouchDB's
    `_all_docs` collates), within `startkey`..`endkey`; and the total number of live documents."""
    columns = _columns(db, with_docs)
    key = _key_sql(db.dialect)
    where, params = _scope_sql(user)
    conds, args = [], []
    low, high = (r.end, r.start) if r.descending else (r.start, r.end)
    low_incl = r.inclusive_end if r.descending else True
    high_incl = True if r.descending else r.inclusive_end
    if low is not None:
        conds.append(f"{key} >{'=' if low_incl else ''} ?")
        args.append(low.encode() if db.dialect != "sqlite" else low)
    if high is not None:
        conds.append(f"{key} <{'=' if high_incl else ''} ?")
        args.append(high.encode() if db.dialect != "sqlite" else high)
    extra = "".join(f" AND {c}" for c in conds)
    order = "DESC" if r.descending else "ASC"
    with Snapshot(db) as cur:
        ceiling = current(cur)
        total = int(
            cur.one(f"SELECT COUNT(*) FROM change_feed WHERE NOT deleted AND seq <= ?{where}", [ceiling, *params])
        )
        raw = cur.all(
            f"SELECT {columns} FROM change_feed WHERE NOT deleted AND seq <= ?{where}{extra} "
            f"ORDER BY {key} {order} LIMIT ? OFFSET ?",
            [ceiling, *params, *args, r.limit if r.limit is not None else 2**62, r.skip],
        )
    return total, [_row(x) for x in raw]
