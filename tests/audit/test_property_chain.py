"""Property: whatever single tampering is done to a chain, the walk names exactly the first broken entry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.audit.verify import Head, walk
from domain.ledger import GENESIS_HASH, audit_hash, dumps


@dataclass(frozen=True)
class Row:
    id: int
    at: datetime
    user_id: int | None
    device_id: str | None
    action: str
    entity_type: str
    entity_id: int | None
    context: str
    prev_hash: str
    hash: str


def digest(row: Row) -> str:
    return audit_hash(
        row.id, row.at, row.user_id, row.device_id, row.action, row.entity_type, row.entity_id, row.context,
        row.prev_hash,
    )  # fmt: skip


contents = st.tuples(
    st.one_of(st.none(), st.integers(1, 10**12)),
    st.one_of(st.none(), st.text(max_size=12)),
    st.sampled_from(["create", "update", "confirm", "cancel", "adjust", "login"]),
    st.sampled_from(["distribution", "transaction", "invoice", "customer", "truck_stock"]),
    st.one_of(st.none(), st.integers(1, 10**12)),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)), max_size=3),
)


def chain(items: list[tuple[object, ...]]) -> tuple[list[Row], Head]:
    rows, prev = [], GENESIS_HASH
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n, (user, device, action, entity, entity_id, context) in enumerate(items, start=1):
        row = Row(n, start + timedelta(microseconds=n * 1001), user, device, action, entity,  # type: ignore[arg-type]
                  entity_id, dumps(context), prev, "")  # type: ignore[arg-type]  # fmt: skip
        row = replace(row, hash=digest(row))
        rows.append(row)
        prev = row.hash
    return rows, Head(len(rows), rows[-1].hash if rows else None)


@given(st.lists(contents, max_size=30))
def test_an_untouched_chain_is_intact(items: list[tuple[object, ...]]) -> None:
    rows, head = chain(items)
    assert walk(rows, head).as_dict() == {"ok": True, "checked": len(rows), "first_broken": None}


@given(st.lists(contents, min_size=1, max_size=30), st.data())
def test_a_changed_field_is_named(items: list[tuple[object, ...]], data: st.DataObject) -> None:
    rows, head = chain(items)
    k = data.draw(st.integers(1, len(rows)))
    field = data.draw(st.sampled_from(["at", "user_id", "device_id", "action", "entity_type", "entity_id", "context"]))
    old = rows[k - 1]
    new_value = {
        "at": old.at + timedelta(microseconds=1),
        "user_id": (old.user_id or 0) + 1,
        "device_id": (old.device_id or "") + "x",
        "action": old.action + "x",
        "entity_type": old.entity_type + "x",
        "entity_id": (old.entity_id or 0) + 1,
        "context": old.context + " ",
    }[field]
    rows[k - 1] = replace(old, **{field: new_value})
    assert walk(rows, head).as_dict() == {
        "ok": False,
        "checked": k - 1,
        "first_broken": {"id": k, "reason": "hash_mismatch"},
    }


@given(st.lists(contents, min_size=1, max_size=30), st.data())
def test_a_deleted_entry_is_named(items: list[tuple[object, ...]], data: st.DataObject) -> None:
    rows, head = chain(items)
    k = data.draw(st.integers(1, len(rows)))
    del rows[k - 1]
    verdict = walk(rows, head)
    if k < head.last_id:  # the entry after the hole no longer links
        assert verdict.as_dict()["first_broken"] == {"id": k + 1, "reason": "prev_hash_mismatch"}
    else:  # the last one: only the head knows
        assert verdict.as_dict()["first_broken"] == {"id": k, "reason": "head_mismatch"}
    assert verdict.checked == k - 1


@given(st.lists(contents, min_size=2, max_size=30), st.data())
def test_swapped_neighbours_are_named(items: list[tuple[object, ...]], data: st.DataObject) -> None:
    rows, head = chain(items)
    k = data.draw(st.integers(1, len(rows) - 1))
    a, b = rows[k - 1], rows[k]
    rows[k - 1], rows[k] = replace(b, id=a.id), replace(a, id=b.id)
    assert walk(rows, head).as_dict()["first_broken"] == {"id": k, "reason": "prev_hash_mismatch"}


@given(st.lists(contents, min_size=1, max_size=30), st.data())
def test_a_truncated_tail_names_the_first_missing_entry(items: list[tuple[object, ...]], data: st.DataObject) -> None:
    rows, head = chain(items)
    keep = data.draw(st.integers(0, len(rows) - 1))
    verdict = walk(rows[:keep], head)
    assert verdict.as_dict() == {
        "ok": False,
        "checked": keep,
        "first_broken": {"id": keep + 1, "reason": "head_mismatch"},
    }
