"""LPG_AUTO_EMAIL wired in: a confirm over REST or through a sync push writes its invoice's outbox row with
the commit, and the app's own sender thread e-mails it once through a real SMTP server (aiosmtpd on
127.0.0.1, started here). Each test waits until no outbox row is left pending (`settle`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.audit.models import AuditEntry
from domain.db import Database
from domain.invoicing.models import EmailOutbox, Invoice, InvoiceEvent
from domain.settings import Settings
from tests.conftest import bearer
from tests.support.outputs_smtp import Inbox, attachment, running
from tests.support.sales_support import full, sale_payload
from tests.support.sync_support import push, recent

REFUSAL = "554 5.7.1 Message rejected: policy"


class Refusing(Inbox):
    """Refuses every message, counting the attempts."""

    def __init__(self) -> None:
        super().__init__(refuse=REFUSAL)
        self.attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Stack:
    client: TestClient
    db: Database
    box: Inbox
    driver: dict[str, str]
    admin: dict[str, str]


def outbox_rows(db: Database) -> list[tuple[int, str, int]]:
    rows = db.read(lambda s: s.execute(select(EmailOutbox.invoice_id, EmailOutbox.status, EmailOutbox.attempts)))
    return [tuple(r) for r in rows]  # type: ignore[misc]


def settle(stack: Stack, timeout: float = 30.0) -> None:
    """Wait until the app's sender has taken every outbox row to `sent` or `failed`."""
    deadline = time.monotonic() + timeout
    while any(status == "pending" for _, status, _ in outbox_rows(stack.db)):
        assert time.monotonic() < deadline, outbox_rows(stack.db)
        time.sleep(0.05)


def stack(settings: Settings, box: Inbox, port: int, *, auto_email: bool, **more: Any) -> Iterator[Stack]:
    from server import create_app

    configured = settings.with_(smtp_port=port, auto_email=auto_email, outbox_poll_seconds=0.05, **more)
    db = Database(configured)  # the demo data's database, seen with these settings
    try:
        # the lifespan starts the sender thread (when auto_email is on) and stops it at the end of the block
        with TestClient(create_app(configured, db), base_url="http://127.0.0.1") as client:
            yield Stack(client, db, box, bearer(configured, 2), bearer(configured, 1))
    finally:
        db.dispose()


@pytest.fixture
def on(demo: Database, settings: Settings) -> Iterator[Stack]:
    box = Inbox()
    with running(box) as port:
        yield from stack(settings, box, port, auto_email=True)


@pytest.fixture
def off(demo: Database, settings: Settings) -> Iterator[Stack]:
    box = Inbox()
    with running(box) as port:
        yield from stack(settings, box, port, auto_email=False)


@pytest.fixture
def refusing(demo: Database, settings: Settings) -> Iterator[Stack]:
    box = Refusing()
    with running(box) as port:  # three tries, 0.05 s then 0.1 s apart
        yield from stack(settings, box, port, auto_email=True, email_attempts=3, email_backoff_seconds=0.05)


def a_sale(confirm: bool = True) -> dict[str, Any]:
    return sale_payload(deliveries=[full("CYL12.7", 2)], confirm=confirm)


def invoice_state(db: Database, invoice_id: int) -> tuple[str, list[str]]:
    def read(s: Any) -> tuple[str, list[str]]:
        status = s.execute(select(Invoice.status).where(Invoice.id == invoice_id)).scalar_one()
        kinds = s.execute(
            select(InvoiceEvent.kind).where(InvoiceEvent.invoice_id == invoice_id).order_by(InvoiceEvent.id)
        ).scalars()
        return status, list(kinds)

    return db.read(read)


def the_only_pdf(box: Inbox, number: str, tmp_path: Path) -> None:
    """Exactly one message, to the customer, carrying the PDF of invoice `number`."""
    assert len(box.messages) == 1, [m[2]["Subject"] for m in box.messages]
    _from, to, message = box.messages[0]
    assert to == ["ahseng@example.sg"]
    assert number in message["Subject"]
    name, pdf = attachment(message)
    assert name == f"{number}.pdf" and pdf.startswith(b"%PDF-")
    path = tmp_path / "mailed.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True).stdout.decode()
    assert number in text


def sync_sale(temp_id: str = "trx-1") -> dict[str, Any]:
    return {"client_temp_id": temp_id, "op": "transaction.create", "data": {**a_sale(), "occurred_at": recent()}}


# -- REST -------------------------------------------------------------------------------------------------


def test_rest_create_with_confirm_emails_the_invoice_once(on: Stack, tmp_path: Path) -> None:
    response = on.client.post("/api/v1/transactions/", json=a_sale(), headers=on.driver)
    assert response.status_code == 201, response.text
    invoice = response.json()["invoice"]
    assert invoice["status"] == "generated"  # the answer is the commit's, before any e-mail
    settle(on)
    the_only_pdf(on.box, invoice["number"], tmp_path)
    assert invoice_state(on.db, invoice["id"]) == ("emailed", ["emailed"])


def test_rest_confirm_of_a_draft_emails_once_and_a_draft_alone_sends_nothing(on: Stack, tmp_path: Path) -> None:
    draft = on.client.post("/api/v1/transactions/", json=a_sale(confirm=False), headers=on.driver)
    assert draft.status_code == 201 and draft.json()["invoice"] is None
    settle(on)
    assert on.box.messages == []
    trx_id = draft.json()["id"]
    confirmed = on.client.post(f"/api/v1/transactions/{trx_id}/confirm/", headers=on.driver)
    assert confirmed.status_code == 200, confirmed.text
    again = on.client.post(f"/api/v1/transactions/{trx_id}/confirm/", headers=on.driver)
    assert again.status_code == 409  # not a draft any more: no second invoice, no second e-mail
    settle(on)
    invoice = confirmed.json()["invoice"]
    the_only_pdf(on.box, invoice["number"], tmp_path)
    assert invoice_state(on.db, invoice["id"])[0] == "emailed"


def test_with_the_setting_off_nothing_is_sent(off: Stack) -> None:
    response = off.client.post("/api/v1/transactions/", json=a_sale(), headers=off.driver)
    assert response.status_code == 201
    pushed = push(off.client, off.driver, [sync_sale()])
    assert pushed["results"][0]["status"] == "applied"
    settle(off)
    assert off.box.messages == []
    for invoice_id in (response.json()["invoice"]["id"], pushed["results"][0]["related"]["invoice"]["id"]):
        assert invoice_state(off.db, invoice_id) == ("generated", [])
    assert outbox_rows(off.db) == []


def test_a_refusing_server_leaves_the_invoice_generated_with_email_failed(refusing: Stack) -> None:
    audits = refusing.db.read(lambda s: s.execute(select(func.count()).select_from(AuditEntry)).scalar_one())
    response = refusing.client.post("/api/v1/transactions/", json=a_sale(), headers=refusing.driver)
    assert response.status_code == 201, response.text  # the confirm itself succeeded
    invoice_id = response.json()["invoice"]["id"]
    settle(refusing)
    assert refusing.box.messages == []
    assert isinstance(refusing.box, Refusing) and refusing.box.attempts == 3
    assert invoice_state(refusing.db, invoice_id) == ("generated", ["email_failed"])
    assert outbox_rows(refusing.db) == [(invoice_id, "failed", 3)]
    detail = refusing.db.read(
        lambda s: s.execute(select(InvoiceEvent.detail).where(InvoiceEvent.invoice_id == invoice_id)).scalar_one()
    )
    assert "ahseng@example.sg" in detail and "Message rejected" in detail
    actions = refusing.db.read(
        lambda s: s.execute(select(AuditEntry.action).order_by(AuditEntry.id).offset(audits)).scalars().all()
    )
    assert "confirm" in actions and actions[-1] == "email_failed"
    fetched = refusing.client.get(f"/api/v1/transactions/{response.json()['id']}/", headers=refusing.driver)
    assert fetched.json()["status"] == "confirmed"


# -- sync -------------------------------------------------------------------------------------------------


def test_a_pushed_confirmed_sale_is_emailed_once_and_a_duplicate_push_sends_nothing(on: Stack, tmp_path: Path) -> None:
    change = sync_sale()
    first = push(on.client, on.driver, [change])
    result = first["results"][0]
    assert result["status"] == "applied", result
    invoice = result["related"]["invoice"]
    settle(on)
    the_only_pdf(on.box, invoice["number"], tmp_path)
    assert invoice_state(on.db, invoice["id"]) == ("emailed", ["emailed"])

    again = push(on.client, on.driver, [change])  # the device never saw the answer and sends it again
    assert again["results"][0]["status"] == "duplicate"
    settle(on)
    assert len(on.box.messages) == 1
    assert outbox_rows(on.db) == [(invoice["id"], "sent", 1)]
    assert invoice_state(on.db, invoice["id"]) == ("emailed", ["emailed"])


def test_a_pushed_draft_then_its_confirm_emails_once(on: Stack, tmp_path: Path) -> None:
    draft = {**sync_sale("trx-d"), "data": {**sync_sale("trx-d")["data"], "confirm": False}}
    confirm = {"client_temp_id": "conf-d", "op": "transaction.confirm", "data": {"id": "trx-d"}}
    response = push(on.client, on.driver, [draft, confirm])
    assert [r["status"] for r in response["results"]] == ["applied", "applied"], response
    invoice = response["results"][1]["related"]["invoice"]
    settle(on)
    the_only_pdf(on.box, invoice["number"], tmp_path)


def test_a_dry_run_replay_sends_nothing_and_a_real_replay_sends(on: Stack, tmp_path: Path) -> None:
    push(on.client, on.driver, [{"client_temp_id": "hello", "op": "transaction.cancel", "data": {"id": 999999}}])
    body = {"device_id": "tab-017", "changes": [sync_sale("trx-r")], "dry_run": True}
    dry = on.client.post("/api/v1/sync/replay", json=body, headers=on.admin)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["results"][0]["status"] == "applied"
    settle(on)
    assert on.box.messages == []
    assert on.db.read(lambda s: s.execute(select(func.count()).select_from(Invoice)).scalar_one()) == 0
    assert outbox_rows(on.db) == []

    real = on.client.post("/api/v1/sync/replay", json={**body, "dry_run": False}, headers=on.admin)
    assert real.status_code == 200, real.text
    settle(on)
    the_only_pdf(on.box, real.json()["results"][0]["related"]["invoice"]["number"], tmp_path)


def test_a_refused_atomic_batch_sends_nothing(on: Stack) -> None:
    bad = {"client_temp_id": "bad", "op": "transaction.confirm", "data": {"id": 999999}}
    response = push(on.client, on.driver, [sync_sale("trx-a"), bad], atomic=True)
    assert [r["status"] for r in response["results"]] == ["rejected", "rejected"]
    settle(on)
    assert on.box.messages == [] and outbox_rows(on.db) == []


def test_the_hook_runs_after_the_commit_and_its_failure_does_not_fail_the_push(on: Stack) -> None:
    from reconcile.batch import apply_batch
    from reconcile.envelope import parse_envelope
    from tests.support.sales_support import DRIVER1

    seen: list[tuple[list[int], int]] = []

    def hook(db: Database, invoice_ids: list[int]) -> None:
        # committed: another connection already sees the invoices
        visible = db.read(
            lambda s: s.execute(
                select(func.count()).select_from(Invoice).where(Invoice.id.in_(invoice_ids))
            ).scalar_one()
        )
        seen.append((invoice_ids, visible))
        raise RuntimeError("the hook broke")

    envelope = parse_envelope({"device_id": "tab-h", "changes": [sync_sale("h1"), sync_sale("h2")]})
    response = apply_batch(on.db, DRIVER1, envelope, after_commit=hook)
    ids = [r["related"]["invoice"]["id"] for r in response["results"]]
    assert seen == [(ids, 2)]
