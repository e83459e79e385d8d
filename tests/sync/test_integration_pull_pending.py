"""`pending` is exact: the trigger-kept bucket counts (alembic 0002_pull) agree with a plain COUNT over the
feed, across many buckets, after records moved to new seqs and changed scope, for every kind of reader."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from domain.db import Database
from domain.feed.models import COUNT_BUCKET, FeedCount, FeedEntry
from domain.feed.reader import Scope, Snapshot, count_between, raw_page
from domain.feed.services import record_change

ENTITIES = ("customer", "transaction", "invoice", "truck_stock", "distribution")
SCOPES = [Scope(None), Scope(2), Scope(3), Scope(None, ("transaction",)), Scope(2, ("customer", "invoice")), Scope(7)]


def _write(db: Database, rnd: random.Random, records: dict[tuple[str, int], list[int]], count: int) -> None:
    """`count` changes in units of up to 700: new records and updates (some changing the owner)."""
    done = 0
    while done < count:
        n = min(700, count - done)

        def work(uow: Any, n: int = n) -> None:
            for _ in range(n):
                if records and rnd.random() < 0.4:
                    key = rnd.choice(list(records))
                    records[key][0] += 1
                    if key[0] != "customer" and rnd.random() < 0.3:
                        records[key][1] = rnd.choice([2, 3, 4])
                else:
                    entity = rnd.choice(ENTITIES)
                    key = (entity, len(records) + 1)
                    records[key] = [1, 0 if entity in ("customer", "truck_stock") else rnd.choice([2, 3, 4])]
                version, scope = records[key]
                record_change(uow.session, key[0], key[1], version, doc={"v": version}, scope=scope)

        db.run(work)
        done += n


def _brute(db: Database, low: int, high: int, scope: Scope) -> int:
    def q(s: Any) -> int:
        stmt = select(func.count()).select_from(FeedEntry).where(FeedEntry.seq > low, FeedEntry.seq <= high)
        if scope.user is not None:
            stmt = stmt.where(FeedEntry.scope.in_([0, scope.user]))
        if scope.entities:
            stmt = stmt.where(FeedEntry.entity.in_(scope.entities))
        return int(s.execute(stmt).scalar_one())

    return db.read(q)


def test_bucket_counts_match_the_feed_after_inserts_moves_and_owner_changes(db: Database) -> None:
    rnd = random.Random(8)
    records: dict[tuple[str, int], list[int]] = {}
    _write(db, rnd, records, 6000)
    head = db.read(lambda s: s.execute(select(func.max(FeedEntry.seq))).scalar_one())
    assert head > 5 * COUNT_BUCKET, "the data set must span several buckets"
    total = db.read(lambda s: s.execute(select(func.count()).select_from(FeedEntry)).scalar_one())
    assert total == len(records)
    overall = db.read(
        lambda s: s.execute(
            select(func.sum(FeedCount.n)).where(FeedCount.scope == -1, FeedCount.entity == "*")
        ).scalar()
    )
    assert overall == total
    points = sorted({0, 1, head - 1, head, *[b * COUNT_BUCKET + d for b in range(7) for d in (-1, 0, 1)]})
    points += [rnd.randrange(head) for _ in range(20)]
    with Snapshot(db) as cur:
        for scope in SCOPES:
            for low in points:
                low = max(low, 0)
                for high in (head, min(head, low + rnd.randrange(1, 3 * COUNT_BUCKET))):
                    assert count_between(cur, low, high, scope) == _brute(db, low, high, scope), (scope, low, high)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_page_has_exact_pending_and_pages_tile_the_feed(data: Any, pending_world: Database) -> None:
    db = pending_world
    scope = data.draw(st.sampled_from(SCOPES))
    limit = data.draw(st.sampled_from([1, 7, 100, 1000, 2500]))
    since = data.draw(st.integers(0, 5000))
    with Snapshot(db) as cur:
        page = raw_page(cur, since, limit, scope)
    head = page.current
    expected_rows = _brute(db, min(since, head), head, scope)
    assert len(page.rows) == min(limit, expected_rows)
    assert page.pending == _brute(db, page.last_seq, head, scope)
    assert page.pending == expected_rows - len(page.rows)
    assert (page.pending > 0) == (len(page.rows) == limit and expected_rows > limit)
    if page.rows:
        assert page.rows[0][0] > since and page.rows[-1][0] <= page.last_seq
        # nothing in scope between the last row and last_seq: no row is ever skipped
        assert _brute(db, page.rows[-1][0], page.last_seq, scope) == 0


@pytest.fixture
def pending_world(db: Database) -> Database:
    if not db.read(lambda s: s.execute(select(func.count()).select_from(FeedEntry)).scalar_one()):
        _write(db, random.Random(3), {}, 5000)
    return db


def test_pages_too_long_to_come_back_joined_in_one_read_lose_and_cut_nothing(
    settings: Any, db: Database, monkeypatch: Any
) -> None:
    """MariaDB joins a page's results in the server (GROUP_CONCAT, capped at PACKED_MAX); a page whose text
    is longer, cut by the server, is detected and its rest read again (packed from the seq after the whole
    results, or row by row for a result longer than the cap): nothing is lost or cut."""
    from domain.feed import reader

    def work(uow: Any) -> None:
        for n in range(1, 41):  # results of ~1.5 KB: two of them overflow 2000 bytes inside the second
            record_change(uow.session, "customer", n, 1, doc={"id": n, "pad": "x" * (1400 + n)})

    db.run(work)
    expected = db.read(
        lambda s: [
            (r.seq, r.entity, r.entity_id, r.version) for r in s.scalars(select(FeedEntry).order_by(FeedEntry.seq))
        ]
    )
    monkeypatch.setattr(reader, "PACKED_MAX", 2000)  # a new pool sets this as group_concat_max_len
    small = Database(settings)
    try:
        seen, since = [], 0
        while True:
            page = reader.fetch_page(small, since, 2, Scope())
            if not page.rows:
                break
            for seq, text in page.rows:
                result = orjson.loads(text)  # whole, not cut
                seen.append((seq, result["entity"], result["id"], result["version"]))
            since = page.last_seq
        assert seen == expected
    finally:
        small.dispose()
