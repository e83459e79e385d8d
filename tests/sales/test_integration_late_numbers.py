"""Document numbers are given at the commit's late lock: a token stands in until then, and no counter row is
locked while a service works. Every place a number reaches (rows, feed documents, audit contexts, stored
push answers, answers, Message-IDs) holds the number, in commit order, without gaps."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import select, text

from domain import ledger
from domain.accounts.policy import Actor
from domain.audit.verify import verify_chain
from domain.db import Database
from domain.invoicing.models import Invoice
from domain.logistics.models import TruckStock
from domain.sales.models import Transaction
from domain.settings import Settings
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.sync_support import confirmed_sale as sale

DRIVER = Actor(2, "driver1", "driver")
NUMBER = re.compile(r"^(TRX|INV)-\d{4}-\d{6}$")
# Every text column a number (or a token) can reach.
TEXTS = (
    ("transactions", "number"),
    ("invoices", "number"),
    ("email_outbox", "message_id"),
    ("sync_applied", "result"),
    ("change_feed", "doc"),
    ("audit_log", "context"),
)


def push(db: Database, device: str, changes: list[dict[str, Any]], dry_run: bool = False) -> dict[str, Any]:
    envelope = parse_envelope({"device_id": device, "changes": changes}, allow_dry_run=dry_run)
    return apply_batch(db, DRIVER, envelope, dry_run=dry_run)


def tokens_left(db: Database) -> list[str]:
    def scan(s: Any) -> list[str]:
        found = []
        for table, column in TEXTS:
            rows = s.execute(text(f"SELECT {column} FROM {table} WHERE {column} LIKE '%~N%'")).scalars().all()
            found += [f"{table}.{column}: {value[:120]}" for value in rows]
        return found

    return db.read(scan)


def numbers_in_db(db: Database) -> dict[int, tuple[str, str]]:
    """transaction id -> (its number, its invoice's number)."""
    rows = db.read(
        lambda s: s.execute(
            select(Transaction.id, Transaction.number, Invoice.number).join(
                Invoice, Invoice.transaction_id == Transaction.id
            )
        ).all()
    )
    return {tid: (trx, inv) for tid, trx, inv in rows}


@pytest.fixture
def mailing(demo: Database, settings: Settings) -> Any:
    """The demo database with LPG_AUTO_EMAIL on: a confirm also writes its e-mail's outbox row."""
    db = Database(settings.with_(auto_email=True))
    with db.engine.begin() as conn:
        conn.execute(TruckStock.__table__.update().values(full=1000))  # type: ignore[attr-defined]
    yield db
    db.dispose()


def test_every_place_holds_the_numbers_given_at_commit(mailing: Database) -> None:
    db = mailing
    changes = [
        {
            "client_temp_id": "c-1",
            "op": "customer.create",
            "data": {"name": "Late Number Eating House", "address": "1 Late Rd"},
        },
        sale("s-1", customer="c-1"),
        sale("s-2", qty=10_000),  # refused (not enough stock): its savepoint is undone, it takes no number
        sale("s-3", customer=2),
        sale("s-4", customer="c-1"),
    ]
    body = push(db, "tab-late", changes)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["applied", "applied", "rejected", "applied", "applied"], body["results"]
    in_db = numbers_in_db(db)
    answered = {}
    for r in body["results"]:
        if r["status"] == "applied" and r["entity"] == "transaction":
            assert NUMBER.match(r["number"]) and NUMBER.match(r["related"]["invoice"]["number"]), r
            answered[r["id"]] = (r["number"], r["related"]["invoice"]["number"])
            assert body["id_map"][r["client_temp_id"]]["number"] == r["number"]
    assert answered == in_db  # the answer is the database's
    # Consecutive in the batch's order, no gap where the refused sale was.
    trx = sorted(int(n.rsplit("-", 1)[1]) for n, _ in in_db.values())
    inv = sorted(int(n.rsplit("-", 1)[1]) for _, n in in_db.values())
    assert trx == inv == [1, 2, 3]
    assert [answered[r["id"]][0] for r in body["results"] if r.get("entity") == "transaction"] == sorted(
        n for n, _ in in_db.values()
    )
    # The stored answers: a resend answers the same numbers.
    again = push(db, "tab-late", changes)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate", "rejected", "duplicate", "duplicate"]
    for first, second in zip(body["results"], again["results"], strict=True):
        if first["status"] == "applied":
            assert second["number" if "number" in first else "id"] == first["number" if "number" in first else "id"]
    # Feed documents, audit contexts, Message-IDs: the numbers, never a token; the chain still verifies.
    assert tokens_left(db) == []
    docs = db.read(lambda s: s.execute(text("SELECT doc FROM change_feed WHERE entity = 'invoice'")).scalars().all())
    for _trx_number, inv_number in in_db.values():
        assert any(f'"number":"{inv_number}"' in doc for doc in docs)
    message_ids = db.read(lambda s: s.execute(text("SELECT message_id FROM email_outbox")).scalars().all())
    assert sorted(m.split(".")[0] for m in message_ids) == sorted(f"<{inv}" for _, inv in in_db.values())
    assert verify_chain(db).ok


def test_a_dry_run_answers_the_numbers_it_would_get_and_writes_none(demo: Database) -> None:
    push(demo, "tab-dry", [sale("s-0")])
    body = push(demo, "tab-dry", [sale("s-1"), sale("s-2")], dry_run=True)
    assert [r["number"] for r in body["results"]] == [
        "TRX-{}-000002".format(body["results"][0]["number"][4:8]),
        "TRX-{}-000003".format(body["results"][0]["number"][4:8]),
    ]
    assert len(numbers_in_db(demo)) == 1 and tokens_left(demo) == []


def test_a_rest_confirm_answers_its_numbers(demo: Database, client: Any, driver_headers: dict[str, str]) -> None:
    draft = sale("s-rest")["data"] | {"confirm": False, "customer": 1}
    created = client.post("/api/v1/transactions/", json=draft, headers=driver_headers)
    assert created.status_code == 201, created.text
    trx_id = created.json()["id"]
    confirmed = client.post(f"/api/v1/transactions/{trx_id}/confirm/", headers=driver_headers)
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert NUMBER.match(body["number"]) and body["number"] == numbers_in_db(demo)[trx_id][0]
    assert tokens_left(demo) == []


@pytest.mark.mysql_only
@pytest.mark.slow
def test_a_sale_in_progress_holds_no_number(demo: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sale that has done its work but not yet committed locks no counter row: another truck's sale
    commits meanwhile and gets the first number; the waiting one gets the next (commit order)."""
    reached, release = threading.Event(), threading.Event()
    real = ledger.write_ledger

    def held(session: Any, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "held-sale":
            reached.set()
            assert release.wait(60)
        real(session, *args, **kwargs)

    monkeypatch.setattr(ledger, "write_ledger", held)
    answers: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def run(name: str, truck: int, customer: int) -> None:
        try:
            answers[name] = push(demo, f"tab-{name}", [sale(f"{name}-1", truck=truck, customer=customer)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    first = threading.Thread(target=run, args=("held", 1, 1), name="held-sale")
    first.start()
    assert reached.wait(60)  # the held sale's service has run: stock rows locked, numbers handed out
    second = threading.Thread(target=run, args=("free", 2, 2))
    second.start()
    second.join(30)
    try:
        assert not second.is_alive(), "the second sale waited for the first one's transaction"
        assert not errors, errors
    finally:
        release.set()
        first.join(60)
    assert not errors, errors
    free, held_answer = answers["free"]["results"][0], answers["held"]["results"][0]
    year = free["number"][4:8]
    assert (free["number"], held_answer["number"]) == (f"TRX-{year}-000001", f"TRX-{year}-000002")
    assert free["related"]["invoice"]["number"] == f"INV-{year}-000001"
    assert held_answer["related"]["invoice"]["number"] == f"INV-{year}-000002"
    assert tokens_left(demo) == []
