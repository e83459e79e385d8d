"""On MariaDB a feed page is read as one packed row (GROUP_CONCAT, domain/feed/reader.py), falling back to
one row a result only for a result too large to pack. A page whose joined text is longer than the cap comes
back cut; its whole results are kept and the rest is read packed again, from the seq after them. The packed read must be taken for an ordinary page and
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
    with Snapshot(db) as cur:
        plain = reader._row_by_row(cur, reader._RESULT[cur.dialect], "seq > ?", " ORDER BY seq LIMIT ?", [0, 50])
    assert page.rows == plain
    results = [orjson.loads(doc) for _, doc in page.rows]
    notes = [r["doc"]["note"] for r in results if "note" in r["doc"]]
    assert set(notes) == {d["note"] for d in DOCS}


def test_a_page_longer_than_the_cap_is_read_in_several_packed_reads_with_nothing_cut_or_lost(
    settings: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results of ~1 KB under a cap of 3,000 bytes: on MariaDB every packed read comes back cut after two
    or three results; the page is still complete, in order, byte for byte the row-by-row read, and no
    row-by-row read was needed (no single result is longer than the cap). SQLite reads the page in one
    row-by-row read."""

    def work(uow: Any) -> None:
        for i in range(30):
            record_change(uow.session, "customer", 20_000 + i, 1, doc={"i": i, "pad": "y" * (900 + 7 * i)}, scope=0)

    db.run(work)
    monkeypatch.setattr(reader, "PACKED_MAX", 3000)  # a new pool sets this as group_concat_max_len
    small = Database(settings)
    try:
        seen = _statements(monkeypatch)
        with Snapshot(small) as cur:
            page = raw_page(cur, 0, 25, Scope(None))
            plain = reader._row_by_row(cur, reader._RESULT[cur.dialect], "seq > ?", " ORDER BY seq LIMIT ?", [0, 25])
    finally:
        small.dispose()
    packed = [s for s in seen if "GROUP_CONCAT" in s]
    row_by_row = [s for s in seen if s.lstrip().startswith("SELECT seq, ")]
    if db.dialect == "mysql":
        assert len(packed) >= 9 and len(row_by_row) == 1, seen  # the one row-by-row read is `plain`'s
    else:
        assert not packed and len(row_by_row) == 2, seen
    assert [seq for seq, _ in page.rows] == [seq for seq, _ in plain] and len(plain) == 25
    assert page.rows == plain
    assert [orjson.loads(text)["doc"]["i"] for _, text in page.rows] == list(range(25))
