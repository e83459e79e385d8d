"""A record's scope never changes, so no replica of `/couchdb/lpg` (or of the native pull) needs a tombstone
for a record that left a driver's scope: only deletions do, and they are tombstones already.

Scope is computed where a change is recorded (`record_change(..., scope=...)`): reference data and stock rows
(trucks are not tied to drivers) are scope 0, distributions, transactions, meter readings and invoices their
`driver_id`, which is set when the record is created (the caller) and never written again (`driver` is a
read-only field of every command). This test writes through every push operation and the REST writes, as the
driver and as an admin acting on the driver's records (the path where a scope taken from the caller would
differ), and checks every feed row the ledger wrote: one scope per record, the one its owner column gives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

import domain.ledger
from domain.db import Database
from domain.feed.models import PUBLIC_SCOPE
from domain.feed.services import FEED_ENTITIES
from domain.invoicing.models import Invoice
from domain.logistics.models import Distribution
from domain.sales.models import MeterReading, Transaction
from reconcile.ops import OPS
from tests.conftest import user_id
from tests.support.sync_support import by_temp_id, push, recent

OWNED = {"transaction": Transaction, "distribution": Distribution, "meter_reading": MeterReading, "invoice": Invoice}


def change(temp_id: str, op: str, **data: Any) -> dict[str, Any]:
    return {"client_temp_id": temp_id, "op": op, "data": data}


def test_every_write_keeps_a_records_scope(
    demo: Database,
    client: TestClient,
    driver_headers: dict[str, str],
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: dict[tuple[str, int], set[int]] = defaultdict(set)
    upsert = domain.ledger._upsert_feed

    def recording(writes: Any, rows: list[dict[str, Any]], *rest: Any) -> None:
        for row in rows:
            written[(row["entity"], row["entity_id"])].add(row["scope"])
        upsert(writes, rows, *rest)

    monkeypatch.setattr(domain.ledger, "_upsert_feed", recording)
    driver, admin = user_id(demo, "driver1"), user_id(demo, "admin")
    at = recent()
    sale = {
        "customer": 1,
        "truck": 1,
        "occurred_at": at,
        "deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": 1}],
    }
    item = {"equipment": "CYL14", "movement_type": "collection", "qty": 1}
    changes = [
        change("c-1", "customer.create", name="Scope House", address="1 Scope Rd"),
        change("c-2", "customer.update", id="c-1", phone="+65 61110000"),
        change("m-1", "meter_reading.create", customer=1, reading="150.00", occurred_at=at),
        change("d-1", "distribution.create", depot=1, truck=1, items=[item]),
        change("d-2", "distribution.update", id="d-1", items=[{**item, "qty": 2}]),
        change("d-3", "distribution.confirm", id="d-1"),
        change("d-4", "distribution.create", depot=1, truck=1, items=[item]),
        change("d-5", "distribution.cancel", id="d-4"),
        change("t-1", "transaction.create", **sale, meter={"reading": "160.00"}),
        change("t-2", "transaction.update", id="t-1", deliveries=[{**sale["deliveries"][0], "qty": 2}]),
        change("t-3", "transaction.confirm", id="t-1"),
        change("t-4", "transaction.create", **sale),
        change("t-5", "transaction.cancel", id="t-4"),
        change("i-1", "invoice.mark_printed", transaction="t-1"),
        change("i-2", "invoice.mark_emailed", transaction="t-1"),
        change("i-3", "invoice.mark_paid", transaction="t-1", amount="1.00", method="cash"),
        change("t-6", "transaction.create", **sale),  # a draft an admin confirms below
        change("d-6", "distribution.create", depot=1, truck=1, items=[item]),  # likewise
    ]
    results = by_temp_id(push(client, driver_headers, changes, device="tab-scope"))
    assert {t: r["status"] for t, r in results.items()} == {c["client_temp_id"]: "applied" for c in changes}, results
    assert {c["op"] for c in changes} == set(OPS), "a push operation is not covered here"

    # An admin acting on the driver's records, and the admin-only writes.
    trx, dist = results["t-6"]["id"], results["d-6"]["id"]
    ok = [
        client.post(f"/api/v1/transactions/{trx}/confirm/", headers=admin_headers),
        client.post(f"/api/v1/distributions/{dist}/confirm/", headers=admin_headers),
        client.patch(f"/api/v1/customers/{results['c-1']['id']}/", json={"meter_rate": "3.30"}, headers=admin_headers),
        client.post(
            "/api/v1/stock/adjustments/",
            json={"place": "truck", "truck": 2, "equipment": "CYL9", "full_delta": 1, "reason": "count"},
            headers=admin_headers,
        ),
        client.patch("/api/v1/trucks/1/", json={"name": "Lorry One"}, headers=admin_headers),
        client.patch("/api/v1/equipment/1/", json={"name": "CYL 9kg (blue)"}, headers=admin_headers),
        client.patch("/api/v1/depots/1/", json={"name": "Jurong Port"}, headers=admin_headers),
        client.patch("/api/v1/services/1/", json={"name": "Installation"}, headers=admin_headers),
        client.post(
            "/api/v1/transactions/", json={**sale, "confirm": True, "occurred_at": recent()}, headers=admin_headers
        ),
    ]
    assert all(r.status_code in (200, 201) for r in ok), [r.text for r in ok if r.status_code not in (200, 201)]
    invoice = demo.read(lambda s: s.scalar(select(Invoice.id).where(Invoice.transaction_id == trx)))
    paid = client.post(
        f"/api/v1/invoices/{invoice}/mark-paid/", json={"amount": "1.00", "method": "cash"}, headers=admin_headers
    )
    assert paid.status_code == 200, paid.text

    assert {entity for entity, _ in written} == set(FEED_ENTITIES), "a feed entity is not covered here"
    owners: dict[tuple[str, int], int] = {}
    for entity, model in OWNED.items():
        ids = [i for e, i in written if e == entity]
        rows = demo.read(lambda s, m=model, ids=ids: s.execute(select(m.id, m.driver_id).where(m.id.in_(ids))).all())
        owners |= {(entity, row_id): owner for row_id, owner in rows}
    for key, scopes in written.items():
        expected = owners[key] if key[0] in OWNED else PUBLIC_SCOPE
        assert scopes == {expected}, f"{key} was written with scopes {scopes}, its owner is {expected}"
    # The records the admin confirmed, paid and adjusted stay the driver's; the admin's own sale is the admin's.
    assert written[("transaction", trx)] == {driver} and written[("invoice", invoice)] == {driver}
    assert written[("distribution", dist)] == {driver}
    assert admin in {next(iter(s)) for (e, _), s in written.items() if e == "transaction"}
