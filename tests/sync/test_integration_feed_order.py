"""No gaps: a reader that follows `last_seq` sees every committed change, and seqs never go backwards."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import select

from domain.audit.services import audit
from domain.db import Database
from domain.feed.reader import read_page
from domain.feed.services import record_change
from domain.logistics.docs import stock_doc
from domain.logistics.models import TruckStock
from domain.logistics.stock import StockKey, lock_stock_rows


@pytest.mark.mysql_only
def test_reader_following_last_seq_never_misses_or_goes_back(demo: Database) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    keys = [StockKey("truck", t, e) for t in (1, 2, 3) for e in (1, 2, 3, 4)]

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                chosen = rnd.sample(keys, 2)

                def work(uow):  # type: ignore[no-untyped-def]
                    rows = lock_stock_rows(uow.session, chosen)
                    for row in rows.values():
                        row.empty += 1
                        row.touch()
                        record_change(uow.session, "truck_stock", row, doc=lambda r=row: stock_doc(r, "X"))
                        audit(uow.session, None, None, "test", "truck_stock", row)
                    time.sleep(rnd.random() * 0.004)  # widen the window between the write and the commit

                demo.run(work)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    seen: dict[int, int] = {}
    last_seq, previous_seqs = 0, -1
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            page = demo.read(lambda s: read_page(s, last_seq, limit=3, entities=["truck_stock"]))
            for row in page.rows:
                assert row.seq > previous_seqs, "a seq went backwards"
                previous_seqs = row.seq
                seen[row.entity_id] = max(seen.get(row.entity_id, 0), row.version)
            assert page.last_seq >= last_seq
            last_seq = page.last_seq
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    while True:  # drain what the writers committed last
        page = demo.read(lambda s: read_page(s, last_seq, limit=50, entities=["truck_stock"]))
        for row in page.rows:
            assert row.seq > previous_seqs
            previous_seqs = row.seq
            seen[row.entity_id] = max(seen.get(row.entity_id, 0), row.version)
        last_seq = page.last_seq
        if not page.rows:
            break
    final = demo.read(lambda s: {r.id: r.version for r in s.scalars(select(TruckStock))})
    assert seen == final
    assert sum(final.values()) > 100, "the writers should have committed plenty"
