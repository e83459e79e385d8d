"""The feed's bucket counts equal a recount of the feed after pushes of every size.

On MariaDB a unit with many feed rows counts them with two set-based statements while the triggers skip its
seqs (alembic 0004_feed_counts, `domain.ledger._upsert_feed`); smaller units leave the counting to the
triggers. Both kinds, new records (staged, never looked up) and records moving to a new seq (subtracted from
their old bucket first), must leave `change_feed_counts` exactly as the triggers alone would have.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select, text

from domain.accounts.policy import Actor
from domain.db import Database
from domain.feed.models import COUNT_BUCKET, FeedEntry
from domain.ledger import COUNTED_BY_STATEMENT
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.sync_support import confirmed_sale

DRIVER = Actor(2, "driver1", "driver")


def _push(db: Database, device: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
    response = apply_batch(db, DRIVER, parse_envelope({"device_id": device, "changes": changes}))
    assert {r["status"] for r in response["results"]} == {"applied"}, [
        r for r in response["results"] if r["status"] != "applied"
    ][:2]
    return response


def _creates(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "client_temp_id": f"{prefix}-{i}",
            "op": "customer.create",
            "data": {"name": f"Counted Customer {prefix} {i}", "address": f"{i} Count Rd"},
        }
        for i in range(n)
    ]


def _updates(ids: list[int], phone: str) -> list[dict[str, Any]]:
    return [
        {
            "client_temp_id": f"u-{phone}-{i}",
            "op": "customer.update",
            "data": {"id": i, "base_version": None, "phone": phone},
        }
        for i in ids
    ]


def _recount(db: Database) -> dict[tuple[int, str, int], int]:
    """What the triggers would hold: every feed row four times, in its bucket."""
    expected: dict[tuple[int, str, int], int] = {}
    for scope, entity, seq in db.read(
        lambda s: s.execute(select(FeedEntry.scope, FeedEntry.entity, FeedEntry.seq)).all()
    ):
        for key in ((scope, entity), (scope, "*"), (-1, entity), (-1, "*")):
            bucket = (key[0], key[1], seq // COUNT_BUCKET)
            expected[bucket] = expected.get(bucket, 0) + 1
    return expected


def _counts(db: Database) -> dict[tuple[int, str, int], int]:
    rows = db.read(lambda s: s.execute(text("SELECT scope, entity, bucket, n FROM change_feed_counts")).all())
    return {(int(scope), str(entity), int(bucket)): int(n) for scope, entity, bucket, n in rows if n}


def _customer_ids(response: dict[str, Any]) -> list[int]:
    return [int(r["id"]) for r in response["results"] if r["entity"] == "customer"]


def test_counts_equal_a_recount_after_big_and_small_pushes_of_new_and_moved_records(demo: Database) -> None:
    big = COUNTED_BY_STATEMENT + 10
    # The next seqs straddle a bucket's edge, and the moves below carry records across it.
    demo.run(
        lambda uow: uow.session.execute(text(f"UPDATE counters SET value = {COUNT_BUCKET - 20} WHERE name = 'feed'"))
    )
    created = _customer_ids(_push(demo, "tab-count", _creates("a", big)))  # new records, one unit
    assert _counts(demo) == _recount(demo)
    # Records that already have feed rows move to new seqs (and past bucket edges as the feed grows).
    for round_ in range(3):
        _push(demo, "tab-count", _updates(created, f"+65 6{round_}00 0000")[: big - 3] + _creates(f"b{round_}", 3))
        assert _counts(demo) == _recount(demo)
    # Small units (the triggers count), then a big unit of sales naming records of both kinds.
    _push(demo, "tab-count", _updates(created[:5], "+65 6999 0000") + _creates("c", 2))
    sales = [confirmed_sale(f"s-{i}", created[i]) for i in range(15)]  # the demo truck holds 20 full CYL12.7
    _push(demo, "tab-count", sales + _updates(created[15:], "+65 6888 0000") + _creates("d", 5))
    seqs = demo.read(lambda s: s.execute(select(FeedEntry.seq)).scalars().all())
    assert len({seq // COUNT_BUCKET for seq in seqs}) >= 2, "the pushes must cross a bucket's edge"
    assert _counts(demo) == _recount(demo)


@pytest.mark.mysql_only
def test_a_range_left_on_a_connection_never_makes_the_triggers_skip_a_small_units_rows(demo: Database) -> None:
    """A big unit's statement that failed after setting its range leaves it on the connection; the next feed
    write of a small unit on that connection resets it before its rows go in."""

    @event.listens_for(demo.engine, "checkout")
    def stale(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET @lpg_feed_lo = 0, @lpg_feed_hi = 1000000000")  # covers every seq of this test

    try:
        _push(demo, "tab-stale", _creates("small", 3))
        _push(demo, "tab-stale", [confirmed_sale("s-small", 1)])
    finally:
        event.remove(demo.engine, "checkout", stale)
    assert _counts(demo) == _recount(demo)
