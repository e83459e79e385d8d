"""A small push's new rows are inserted by the commit's own statement on MariaDB: until then their ids are id
tokens (`domain.ledger.write_staged(id_tokens=True)`), in the answer, the stored answer, the feed documents,
the audit entries and the rows that refer to them. Every place must hold the row's real id afterwards, on
the one-trip path and on each way back from it (a unit that cannot take it, an ORM flush in between), and
the audit chain must verify. The same pushes run on SQLite, where rows get their ids at once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import text

from domain import ledger
from domain.accounts.policy import Actor
from domain.audit.verify import verify_chain
from domain.db import Database
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.sync_support import confirmed_sale

DRIVER = Actor(2, "driver1", "driver")
# Integer columns a new row's id reaches; none may ever hold a token.
ID_COLUMNS = (
    ("customers", "id"),
    ("transactions", "id"),
    ("invoices", "id"),
    ("invoices", "transaction_id"),
    ("delivery_lines", "transaction_id"),
    ("invoice_lines", "invoice_id"),
    ("sync_applied", "entity_id"),
    ("change_feed", "entity_id"),
    ("audit_log", "entity_id"),
)
TEXT_COLUMNS = (("sync_applied", "result"), ("change_feed", "doc"), ("audit_log", "context"))


def push(db: Database, device: str, changes: list[dict[str, Any]], dry_run: bool = False) -> dict[str, Any]:
    envelope = parse_envelope({"device_id": device, "changes": changes}, allow_dry_run=dry_run)
    return apply_batch(db, DRIVER, envelope, dry_run=dry_run)


def one(db: Database, sql: str, **params: Any) -> Any:
    return db.read(lambda s: s.execute(text(sql), params).one())


def no_tokens_anywhere(db: Database) -> None:
    def scan(s: Any) -> list[str]:
        found = []
        for table, column in ID_COLUMNS:
            n = s.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {column} >= :low"), {"low": ledger.ID_TOKEN_LOW})
            if n.scalar_one():
                found.append(f"{table}.{column}")
        for table, column in TEXT_COLUMNS:
            for value in s.execute(text(f"SELECT {column} FROM {table}")).scalars():
                # 19-digit integers from 2**62 up: an id token's digits left in a text
                for word in value.replace('"', " ").replace(",", " ").replace(":", " ").split():
                    if word.isdigit() and len(word) == 19 and int(word) >= ledger.ID_TOKEN_LOW:
                        found.append(f"{table}.{column}: {word}")
        return found

    assert db.read(scan) == []


def check_customer(db: Database, body: dict[str, Any], name: str) -> None:
    (result,) = body["results"]
    assert result["status"] == "applied", result
    new_id = result["id"]
    assert one(db, "SELECT name FROM customers WHERE id = :i", i=new_id)[0] == name
    assert body["id_map"][result["client_temp_id"]]["id"] == new_id
    entity_id, stored = one(
        db, "SELECT entity_id, result FROM sync_applied WHERE client_temp_id = :t", t=result["client_temp_id"]
    )
    assert entity_id == new_id and orjson.loads(stored)["id"] == new_id
    doc = one(db, "SELECT doc FROM change_feed WHERE entity = 'customer' AND entity_id = :i", i=new_id)[0]
    assert orjson.loads(doc)["id"] == new_id
    context = one(db, "SELECT context FROM audit_log WHERE entity_type = 'customer' AND entity_id = :i", i=new_id)[0]
    assert orjson.loads(context)["after"]["id"] == new_id


def check_sale(db: Database, body: dict[str, Any]) -> None:
    (result,) = body["results"]
    assert result["status"] == "applied", result
    trx_id, invoice_id = result["id"], result["related"]["invoice"]["id"]
    number, invoice_number = one(
        db,
        "SELECT t.number, i.number FROM transactions t JOIN invoices i ON i.transaction_id = t.id"
        " WHERE t.id = :t AND i.id = :i",
        t=trx_id,
        i=invoice_id,
    )
    assert (number, invoice_number) == (result["number"], result["related"]["invoice"]["number"])
    assert one(db, "SELECT COUNT(*) FROM delivery_lines WHERE transaction_id = :t", t=trx_id)[0] == 1
    assert one(db, "SELECT COUNT(*) FROM invoice_lines WHERE invoice_id = :i", i=invoice_id)[0] >= 1
    stored = one(db, "SELECT result FROM sync_applied WHERE client_temp_id = :t", t=result["client_temp_id"])[0]
    assert orjson.loads(stored) == {k: v for k, v in result.items() if k != "status"} | {"status": "applied"}
    trx_doc = orjson.loads(
        one(db, "SELECT doc FROM change_feed WHERE entity = 'transaction' AND entity_id = :t", t=trx_id)[0]
    )
    assert trx_doc["id"] == trx_id and trx_doc["invoice"]["id"] == invoice_id
    inv_doc = orjson.loads(
        one(db, "SELECT doc FROM change_feed WHERE entity = 'invoice' AND entity_id = :i", i=invoice_id)[0]
    )
    assert inv_doc["id"] == invoice_id and inv_doc["number"] == invoice_number
    audited = db.read(
        lambda s: s.execute(
            text("SELECT entity_type, entity_id FROM audit_log WHERE entity_id IN (:t, :i)"),
            {"t": trx_id, "i": invoice_id},
        ).all()
    )
    assert ("transaction", trx_id) in audited and ("invoice", invoice_id) in audited


def test_a_new_customer_and_a_sale_hold_their_real_ids_everywhere(demo: Database) -> None:
    for n in range(3):  # ids past the demo's, one after the other
        check_customer(demo, push(demo, "tab-ids", [_customer(f"c-{n}")]), f"Token Eating House c-{n}")
        check_sale(demo, push(demo, "tab-ids", [confirmed_sale(f"s-{n}", customer=1 + n)]))
    no_tokens_anywhere(demo)
    assert verify_chain(demo).ok
    # A resend answers the same ids, from the stored answers.
    again = push(demo, "tab-ids", [_customer("c-0")])
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["id"] == one(demo, "SELECT id FROM customers WHERE name = 'Token Eating House c-0'")[0]


@pytest.mark.mysql_only
def test_the_one_trip_statement_inserts_the_new_rows(demo: Database) -> None:
    """MariaDB: a 1-change push sends its new rows with the commit's statement (no INSERT of their own)."""
    push(demo, "tab-one", [confirmed_sale("s-first")])  # the device registered, the site's stock row made
    statements: list[str] = []

    from sqlalchemy import event

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(demo.engine, "before_cursor_execute", seen)
    try:
        check_customer(demo, push(demo, "tab-one", [_customer("c-one")]), "Token Eating House c-one")
        check_sale(demo, push(demo, "tab-one", [confirmed_sale("s-one")]))
    finally:
        event.remove(demo.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if s.lstrip().upper().startswith("INSERT")], statements
    compound = [s for s in statements if s.startswith("BEGIN NOT ATOMIC")]
    assert len(compound) == 2 and all("LAST_INSERT_ID()" in s for s in compound)
    no_tokens_anywhere(demo)
    assert verify_chain(demo).ok


def test_a_unit_that_cannot_take_the_one_trip_path_inserts_its_rows_first(
    demo: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The way back: the statement cannot carry the unit (`NotOneTrip`, raised before anything is sent), so
    the rows holding tokens are inserted first and every text and row built with the tokens gets the ids."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise ledger.NotOneTrip("test: the two-trip path")

    monkeypatch.setattr(ledger, "_write_in_one_trip", refuse)
    check_customer(demo, push(demo, "tab-back", [_customer("c-back")]), "Token Eating House c-back")
    check_sale(demo, push(demo, "tab-back", [confirmed_sale("s-back")]))
    no_tokens_anywhere(demo)
    assert verify_chain(demo).ok


def test_a_sale_with_a_meter_reading_flushes_its_meter_with_real_ids(demo: Database) -> None:
    """A sale that also moves an ORM object (the customer's meter) flushes it before the commit: the flush
    inserts the rows holding tokens first (`resolve_ids`), and their ids replace the tokens."""
    first = push(demo, "tab-meter", [confirmed_sale("s-m0", reading="100.00")])
    check_sale(demo, first)
    body = push(demo, "tab-meter", [confirmed_sale("s-m1", reading="112.50")])
    check_sale(demo, body)
    trx_id = body["results"][0]["id"]
    assert one(demo, "SELECT COUNT(*) FROM meter_readings WHERE transaction_id = :t", t=trx_id)[0] == 1
    no_tokens_anywhere(demo)
    assert verify_chain(demo).ok


def test_a_dry_run_answers_real_ids_and_keeps_nothing(demo: Database) -> None:
    before = one(demo, "SELECT COUNT(*) FROM transactions")[0]
    body = push(demo, "tab-dry", [confirmed_sale("s-dry")], dry_run=True)
    (result,) = body["results"]
    assert result["status"] == "applied" and 0 < result["id"] < ledger.ID_TOKEN_LOW
    assert 0 < result["related"]["invoice"]["id"] < ledger.ID_TOKEN_LOW
    assert one(demo, "SELECT COUNT(*) FROM transactions")[0] == before


def test_with_ids_replaces_tokens_in_values_and_texts() -> None:
    token = ledger.ID_TOKEN_LOW + 12345
    value = {"id": token, "n": [token, 7, True], "text": f'{{"id":{token}}}', "other": "12345"}
    assert ledger.with_ids(value, {token: 42}) == {"id": 42, "n": [42, 7, True], "text": '{"id":42}', "other": "12345"}
    assert ledger.with_ids(value, {}) is value


def _customer(temp_id: str) -> dict[str, Any]:
    return {
        "client_temp_id": temp_id,
        "op": "customer.create",
        "data": {"name": f"Token Eating House {temp_id}", "address": "1 Token Rd"},
    }
