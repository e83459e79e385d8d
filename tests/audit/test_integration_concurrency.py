"""Many writers, one chain: entries are chained in commit order, without gaps, forks or interleaving."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import defaultdict
from typing import Any

import orjson
import pytest

from domain.audit.services import audit
from domain.audit.verify import verify_chain
from domain.db import Database
from domain.logistics.stock import StockKey, lock_stock_rows
from tests.support.audit_support import entries

KEYS = [StockKey("truck", t, e) for t in (1, 2, 3) for e in (1, 2, 3, 4)]


class Abort(Exception):
    """A unit that fails after auditing: its entries must vanish with it, leaving no hole in the chain."""


def hammer(db: Database, threads: int, units: int) -> int:
    committed = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        nonlocal committed
        rnd = random.Random(seed)
        try:
            for n in range(units):
                chosen = rnd.sample(KEYS, rnd.randint(1, 3))
                fail = n % 5 == 4

                def work(uow: Any, chosen: list[StockKey] = chosen, fail: bool = fail, n: int = n) -> None:
                    rows = lock_stock_rows(uow.session, chosen)
                    for key in sorted(chosen, key=StockKey.sort_key):
                        row = rows[key]
                        before = {"empty": row.empty, "version": row.version}
                        row.empty += 1
                        row.touch()
                        after = {"empty": row.empty, "version": row.version, "row": row.id}
                        audit(uow.session, seed, f"dev-{seed}", "adjust", "truck_stock", row,
                              before=before, after=after, batch=f"{seed}-{n}")  # fmt: skip
                    time.sleep(rnd.random() * 0.003)  # widen the window between writing and committing
                    if fail:
                        raise Abort

                try:
                    db.run(work)
                except Abort:
                    continue
                with lock:
                    committed += len(chosen)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n + 1,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    assert not errors, errors
    return committed


def assert_one_chain_in_commit_order(db: Database, start: int, committed: int) -> None:
    verdict = verify_chain(db, page_size=50)
    assert verdict.as_dict() == {"ok": True, "checked": start + committed, "first_broken": None}
    log = [e for e in entries(db) if e.id > start]
    assert [e.id for e in log] == list(range(start + 1, start + committed + 1))
    # one unit's entries are consecutive: no other writer's entry in between
    batches = [orjson.loads(e.context)["batch"] for e in log]
    closed: set[str] = set()
    for previous, current in itertools.pairwise(batches):
        if current != previous:
            assert current not in closed, f"unit {current} is split by another unit's entries"
            closed.add(previous)
    # commit order: for each (locked) stock row, id order is version order, one version per entry
    versions: dict[int, list[int]] = defaultdict(list)
    for e in log:
        context = orjson.loads(e.context)
        assert context["before"]["version"] + 1 == context["after"]["version"]
        versions[context["after"]["row"]].append(context["after"]["version"])
    for row, seen in versions.items():
        assert seen == sorted(seen) and len(seen) == len(set(seen)), row


def test_concurrent_writers_make_one_unbroken_chain(demo: Database) -> None:
    start = len(entries(demo))
    committed = hammer(demo, threads=4, units=10)
    assert_one_chain_in_commit_order(demo, start, committed)


@pytest.mark.mysql_only
@pytest.mark.slow
def test_concurrent_writers_on_mariadb_make_one_unbroken_chain(demo: Database) -> None:
    start = len(entries(demo))
    committed = hammer(demo, threads=8, units=30)
    assert committed > 300
    assert_one_chain_in_commit_order(demo, start, committed)
