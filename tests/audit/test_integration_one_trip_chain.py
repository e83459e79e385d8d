"""Small pushes on MariaDB take the late lock inside their writes' own statement, where the database
computes the seqs and the audit hashes (`domain.ledger._write_in_one_trip`). The chain it writes must be
the very chain Python computes (`audit_hash`), whatever the text, and the feed's seqs consecutive, with the
answer's `last_seq` the feed counter the push moved. On SQLite the same pushes take the two-trip path and
must give the same result."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from starlette.testclient import TestClient

from domain.audit.models import AuditEntry
from domain.audit.verify import verify_chain
from domain.db import Database
from domain.feed.models import Counter, FeedEntry
from domain.ledger import AUDIT_COUNTER, FEED_COUNTER, GENESIS_HASH, audit_hash
from tests.support.sync_support import by_temp_id, confirmed_sale, push

NAMES = [
    "O'Brien's \\ Kopi",
    'Ah Seng "Lucky" \\\\ Store',
    "陈记 Ünïcödé 🍜 ''",
    "\\u0041 not an escape, ',\"', lpg_h0 '\"]'",
    "50% _off_ %s %(name)s",
]


def check_chain(db: Database) -> tuple[int, int]:
    """Every audit entry's hash is `audit_hash` of its fields and the previous hash; the counters' head and
    values are the last entry's and the last seq. Returns (audit entries, last seq)."""

    def read(session: Any) -> tuple[list[Any], list[int], dict[str, Any]]:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        seqs = list(session.scalars(select(FeedEntry.seq).order_by(FeedEntry.seq)))
        counters = {c.name: c for c in session.scalars(select(Counter))}
        return entries, seqs, counters

    entries, seqs, counters = db.read(read)
    prev = GENESIS_HASH
    for n, entry in enumerate(entries, 1):
        assert entry.id == n and entry.prev_hash == prev, (entry.id, entry.prev_hash, prev)
        expected = audit_hash(
            entry.id,
            entry.at,
            entry.user_id,
            entry.device_id,
            entry.action,
            entry.entity_type,
            entry.entity_id,
            entry.context,
            entry.prev_hash,
        )
        assert entry.hash == expected, (entry.id, entry.context)
        prev = entry.hash
    assert counters[AUDIT_COUNTER].value == len(entries) and counters[AUDIT_COUNTER].head == prev
    assert counters[FEED_COUNTER].value == seqs[-1] and len(set(seqs)) == len(seqs)
    assert verify_chain(db).ok
    return len(entries), seqs[-1]


def test_small_pushes_write_the_chain_python_computes(
    demo: Database, client: TestClient, driver_headers: dict[str, str]
) -> None:
    audits_before, seq_before = check_chain(demo)
    last_seqs = []
    for i, name in enumerate(NAMES):
        change = {
            "client_temp_id": f"ot-{i}",
            "op": "customer.create",
            "data": {"name": name, "address": f"{name} Rd", "email": f"ot{i}@example.sg"},
        }
        response = push(client, driver_headers, [change], device="tab-één")
        assert by_temp_id(response)[f"ot-{i}"]["status"] == "applied", response
        last_seqs.append(response["last_seq"])
    # Two changes in one push: two feed rows and two audit entries linked inside the statement.
    pair = [
        {"client_temp_id": f"ot-pair-{k}", "op": "customer.create", "data": {"name": f"{NAMES[k]} {k}", "address": "x"}}
        for k in range(2)
    ]
    response = push(client, driver_headers, pair, device="tab-één")
    assert {r["status"] for r in response["results"]} == {"applied"}
    last_seqs.append(response["last_seq"])
    audits, seq = check_chain(demo)
    assert audits == audits_before + len(NAMES) + 2
    assert last_seqs == [*range(seq_before + 1, seq_before + len(NAMES) + 1), seq] and seq == seq_before + 7
    # The names came back as sent (the rows' values were written by the same statement).
    stored = demo.read(lambda s: set(s.execute(text("SELECT name FROM customers")).scalars()))
    assert set(NAMES) <= stored


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp")) | st.sampled_from("'\"\\%`;"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s.strip() != "")
)
def test_any_text_gives_the_same_hash_in_the_database_as_in_python(
    demo: Database, client: TestClient, driver_headers: dict[str, str], name: str
) -> None:
    n = demo.read(lambda s: s.execute(text("SELECT COUNT(*) FROM customers")).scalar_one())
    change = {"client_temp_id": f"h-{n}", "op": "customer.create", "data": {"name": name, "address": name}}
    response = push(client, driver_headers, [change])
    result = by_temp_id(response)[f"h-{n}"]
    if result["status"] != "applied":  # a name the domain refuses (length, blank after trimming): nothing to hash
        assert result["status"] == "rejected", result
        return
    check_chain(demo)


def test_small_sales_are_numbered_inside_the_statement_as_python_numbers_them(
    demo: Database, client: TestClient, driver_headers: dict[str, str]
) -> None:
    """A sale's TRX and INV numbers are given where its seqs and hashes are (on MariaDB inside the one-trip
    statement, the series' first row of the year created there too): consecutive per series, in the order
    of the changes, the same in the answer, the rows, the published documents, the audit contexts (hashed
    as Python hashes them) and the stored answers a resend returns; no token is left anywhere."""
    check_chain(demo)
    sales = []
    for i, name in enumerate(NAMES[:3]):
        sales.append(
            [
                {"client_temp_id": f"ns-c{i}", "op": "customer.create", "data": {"name": name, "address": "1 Rd"}},
                *[confirmed_sale(f"ns-s{i}-{k}", f"ns-c{i}") for k in range(1 + i % 2)],  # 1, then 2, then 1
            ]
        )
    answers = {}
    for changes in sales:
        response = push(client, driver_headers, changes, device="tab-numbers")
        assert {r["status"] for r in response["results"]} == {"applied"}, response
        answers.update(by_temp_id(response))
    check_chain(demo)
    order = [c["client_temp_id"] for changes in sales for c in changes if c["op"] == "transaction.create"]
    numbers = [answers[t]["number"] for t in order]
    invoices = [answers[t]["related"]["invoice"]["number"] for t in order]
    year = numbers[0].split("-")[1]
    assert numbers == [f"TRX-{year}-{n:06d}" for n in range(1, len(order) + 1)]
    assert invoices == [f"INV-{year}-{n:06d}" for n in range(1, len(order) + 1)]

    def read(s: Any) -> Any:
        rows = s.execute(text("SELECT id, number FROM transactions ORDER BY id")).all()
        docs = s.execute(text("SELECT doc FROM change_feed WHERE entity IN ('transaction', 'invoice')")).scalars()
        contexts = s.execute(text("SELECT context FROM audit_log")).scalars()
        stored = s.execute(text("SELECT result FROM sync_applied WHERE device_id = 'tab-numbers'")).scalars()
        counters = dict(s.execute(text("SELECT name, value FROM counters")).all())
        return rows, list(docs), list(contexts), list(stored), counters

    rows, docs, contexts, stored, counters = demo.read(read)
    assert [number for _, number in rows] == numbers
    assert counters[f"TRX-{year}"] == counters[f"INV-{year}"] == len(order)
    for blob in [*docs, *contexts, *stored]:
        assert "~N" not in blob, blob
    published = "\n".join(docs)
    assert all(n in published for n in numbers + invoices)
    assert sum(n in "\n".join(contexts) for n in numbers) == len(numbers)
    # A resend is answered from the stored answers: the same numbers.
    again = by_temp_id(push(client, driver_headers, sales[1], device="tab-numbers"))
    for t in ("ns-s1-0", "ns-s1-1"):
        assert again[t]["status"] == "duplicate" and again[t]["number"] == answers[t]["number"]


def test_a_number_past_six_digits_is_written_as_python_writes_it(
    demo: Database, client: TestClient, driver_headers: dict[str, str]
) -> None:
    """`number_text` pads to 6 digits and grows past them; the statement's LPAD must not cut the number."""
    first = push(client, driver_headers, [confirmed_sale("big-0")], device="tab-big")
    year = by_temp_id(first)["big-0"]["number"].split("-")[1]
    with demo.engine.begin() as conn:
        conn.execute(text("UPDATE counters SET value = 999998 WHERE name IN (:trx, :inv)"),
                     {"trx": f"TRX-{year}", "inv": f"INV-{year}"})  # fmt: skip
    second = by_temp_id(
        push(client, driver_headers, [confirmed_sale("big-1"), confirmed_sale("big-2")], device="tab-big")
    )
    assert [second[t]["number"] for t in ("big-1", "big-2")] == [f"TRX-{year}-999999", f"TRX-{year}-1000000"]
    assert second["big-2"]["related"]["invoice"]["number"] == f"INV-{year}-1000000"
    stored = demo.read(lambda s: s.execute(text("SELECT number FROM invoices ORDER BY id DESC LIMIT 1")).scalar_one())
    assert stored == f"INV-{year}-1000000"
    check_chain(demo)
