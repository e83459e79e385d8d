"""The outbox's claims and its admin endpoints: concurrent claims never share a row (on both engines), a
confirm without LPG_AUTO_EMAIL writes no row (a dry run: test_email_auto), and an admin sees a failed e-mail and retries it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from domain.db import Database
from domain.invoicing import outbox
from domain.invoicing.models import EmailOutbox, Invoice
from domain.settings import Settings
from tests.conftest import bearer
from tests.support.outbox_support import queue, send_all
from tests.support.outputs_data import make_invoice
from tests.support.outputs_smtp import Inbox, running
from tests.support.sales_support import full, sale_payload, sell


def test_concurrent_claims_never_share_a_row(demo: Database, settings: Settings) -> None:
    ids = [int(sell(demo, deliveries=[full("CYL9", 1)]).related["invoice"].id) for _ in range(12)]
    for invoice_id in ids:
        queue(demo, settings, invoice_id)
    barrier = threading.Barrier(4)
    claimed: list[list[outbox.Claimed]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            barrier.wait(10)
            for _ in range(4):
                claimed[n].extend(outbox.claim(demo, settings, limit=3))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    rows = [c.id for batch in claimed for c in batch]
    assert len(rows) == len(set(rows)) == 12  # each row leased once: the others were held or gone
    assert outbox.claim(demo, settings) == []  # every lease still runs


def test_a_lapsed_lease_is_claimed_again_with_the_same_message_id(demo: Database, settings: Settings) -> None:
    invoice_id = make_invoice(demo)
    queue(demo, settings, invoice_id)
    short = settings.with_(outbox_lease_seconds=0.001)
    first = outbox.claim(demo, short)
    import time

    time.sleep(0.01)
    second = outbox.claim(demo, short)
    assert [r.id for r in first] == [r.id for r in second]
    assert first[0].message_id == second[0].message_id and second[0].attempts == 2
    assert first[0].token != second[0].token


def test_no_row_when_the_setting_is_off(
    client: TestClient, admin_headers: dict[str, str], driver_headers: dict[str, str], demo: Database
) -> None:
    response = client.post(
        "/api/v1/transactions/", json=sale_payload(deliveries=[full("CYL9", 1)]), headers=driver_headers
    )
    assert response.status_code == 201
    assert demo.read(lambda s: s.scalars(select(EmailOutbox)).all()) == []


@pytest.fixture
def admin_client(demo: Database, settings: Settings) -> Iterator[tuple[TestClient, Settings, Database]]:
    from server import create_app

    refusing = Inbox(refuse="550 5.1.1 mailbox unavailable")
    with running(refusing) as port:
        configured = settings.with_(smtp_port=port, auto_email=True, email_attempts=2)
        db = Database(configured)
        app = create_app(configured.with_(auto_email=False), db)  # no sender thread: the test runs the rounds
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield client, configured, db
        db.dispose()


def test_an_admin_sees_a_failed_email_and_retries_it(admin_client: tuple[TestClient, Settings, Database]) -> None:
    client, configured, db = admin_client
    admin, driver = bearer(configured, 1), bearer(configured, 2)
    invoice_id = make_invoice(db)
    row = queue(db, configured, invoice_id)
    assert send_all(db, configured) == "failed"

    assert client.get("/api/v1/outbox/", headers=driver).status_code == 403
    listed = client.get("/api/v1/outbox/", params={"status": "failed"}, headers=admin)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["results"]
    number = db.read(lambda s: s.get(Invoice, invoice_id).number)  # type: ignore[union-attr]
    assert (item["id"], item["invoice"], item["invoice_number"], item["status"], item["attempts"]) == (
        row, invoice_id, number, "failed", 2,
    )  # fmt: skip
    assert "mailbox unavailable" in item["last_error"] and item["message_id"].startswith(f"<{number}.")
    assert client.get("/api/v1/outbox/", params={"status": "sent"}, headers=admin).json()["count"] == 0

    with running(Inbox()) as port:  # the mail server is fixed
        fixed = configured.with_(smtp_port=port)
        retried = client.post(f"/api/v1/outbox/{row}/retry/", headers=admin)
        assert retried.status_code == 200, retried.text
        assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
        assert send_all(db, fixed) == "sent"
    after = client.get("/api/v1/outbox/", params={"invoice": invoice_id}, headers=admin).json()["results"][0]
    assert (after["status"], after["message_id"]) == ("sent", item["message_id"])
    assert db.read(lambda s: s.get(Invoice, invoice_id).status) == "emailed"  # type: ignore[union-attr]

    again = client.post(f"/api/v1/outbox/{row}/retry/", headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    assert client.post("/api/v1/outbox/999999/retry/", headers=admin).status_code == 404
    assert client.post(f"/api/v1/outbox/{row}/retry/", headers=driver).status_code == 403


def test_the_outbox_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/api/schema/").json()["paths"]
    assert "get" in paths["/api/v1/outbox/"] and "post" in paths["/api/v1/outbox/{id}/retry/"]
