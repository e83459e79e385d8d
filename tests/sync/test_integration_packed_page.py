"""On MariaDB a feed page is read as one packed row (GROUP_CONCAT, domain/feed/reader.py), falling back to
one row a result only for pages too large to pack. The packed read must be taken for an ordinary page and
give exactly what the row-by-row read gives, documents with newlines, quotes and backslashes included."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from domain.db import Database
from domain.feed import reader
from domain.feed.reader import Scope, Snapshot, raw_page
from domain.feed.services import record_change

DOCS = [
    {"n": 1, "note": "line one\nline two"},
    {"n": 2, "note": 'a "quoted" word and a back\\slash'},
    {"n": 3, "note": "tab\there, nul-free \u2028 separator"},
]


def _seed(db: Database, count: int) -> None:
    def work(uow: Any) -> None:
        for i in range(count):
            doc = dict(DOCS[i % len(DOCS)], i=i)
            record_change(uow.session, "customer", 10_000 + i, 1, doc=doc, scope=0)

    db.run(work)


def _statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = reader._Cursor.all

    def all(self: reader._Cursor, sql: str, params: Any = ()) -> list[Any]:
        seen.append(sql)
        return original(self, sql, params)

    monkeypatch.setattr(reader._Cursor, "all", all)
    return seen


def test_a_page_is_read_packed_on_mariadb_and_equals_the_row_by_row_read(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db, 60)
    seen = _statements(monkeypatch)
    with Snapshot(db) as cur:
        page = raw_page(cur, 0, 50, Scope(None))
    row_by_row = [s for s in seen if s.lstrip().startswith("SELECT seq, ")]
    packed = [s for s in seen if "GROUP_CONCAT" in s]
    if db.dialect == "mysql":
        assert packed and not row_by_row, seen
    else:
        assert row_by_row and not packed, seen
    assert len(page.rows) == 50
    # The same rows read one by one (the fallback), compared byte for byte.
    monkeypatch.setattr(reader, "PACKED_MAX", 0)
    with Snapshot(db) as cur:
        plain = raw_page(cur, 0, 50, Scope(None))
    assert page.rows == plain.rows
    results = [orjson.loads(doc) for _, doc in page.rows]
    notes = [r["doc"]["note"] for r in results if "note" in r["doc"]]
    assert set(notes) == {d["note"] for d in DOCS}
