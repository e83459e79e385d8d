"""E-mailing invoices through a real SMTP server (aiosmtpd on 127.0.0.1, started here)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from domain.accounts.policy import Actor
from domain.audit.models import AuditEntry
from domain.errors import EmailFailed
from domain.invoicing.models import EmailOutbox, Invoice, InvoiceEvent
from domain.invoicing.outputs.mail import deliver, email_invoice
from server import create_app
from tests.support.outbox_support import queue, send_all
from tests.support.outputs_data import make_invoice
from tests.support.outputs_smtp import Inbox, attachment, free_port, running

ADMIN = Actor(1, "admin", "admin")


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    with running(box) as port:
        yield box, port


@pytest.fixture
def refusing() -> Iterator[int]:
    with running(Inbox(refuse="554 5.7.1 Message rejected: policy")) as port:
        yield port


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "attached.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True).stdout.decode()


def status_of(db: Any, invoice_id: int) -> tuple[str, Any, int]:
    row = db.read(
        lambda s: s.execute(
            select(Invoice.status, Invoice.emailed_at, Invoice.version).where(Invoice.id == invoice_id)
        ).one()
    )
    return row.status, row.emailed_at, row.version


def events(db: Any, invoice_id: int) -> list[tuple[str, str | None]]:
    rows = db.read(
        lambda s: s.execute(
            select(InvoiceEvent.kind, InvoiceEvent.detail)
            .where(InvoiceEvent.invoice_id == invoice_id)
            .order_by(InvoiceEvent.id)
        ).all()
    )
    return [(r.kind, r.detail) for r in rows]


def test_deliver_hands_the_message_to_a_real_smtp_server(demo, settings, inbox, tmp_path) -> None:
    box, port = inbox
    from domain.invoicing.outputs.mail import build_message
    from domain.invoicing.outputs.pdf import invoice_pdf

    invoice_id = make_invoice(demo)
    rendered = invoice_pdf(demo, settings, ADMIN, invoice_id)
    deliver(settings.with_(smtp_port=port), build_message(settings, rendered, "ahseng@example.sg"))
    assert len(box.messages) == 1
    mail_from, rcpt, message = box.messages[0]
    assert mail_from == settings.mail_from and rcpt == ["ahseng@example.sg"]
    assert message["Subject"] == f"Tax invoice INV-2026-000001 from {settings.company_name}"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "Balance due: SGD 308.46" in body.get_content()
    name, pdf = attachment(message)
    assert name == "INV-2026-000001.pdf" and pdf.startswith(b"%PDF-") and pdf == rendered.pdf
    assert "INV-2026-000001" in pdf_text(pdf, tmp_path)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_is_used_when_a_user_is_configured_and_a_wrong_password_is_email_failed(demo, settings) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from domain.invoicing.outputs.mail import build_message
    from domain.invoicing.outputs.pdf import invoice_pdf

    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        logins.append((user, password))
        return AuthResult(success=(user, password) == ("invoices", "s3cret"), handled=False)

    box = Inbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,  # a test on 127.0.0.1; production sets LPG_SMTP_STARTTLS
    )
    controller.start()
    try:
        rendered = invoice_pdf(demo, settings, ADMIN, make_invoice(demo))
        message = build_message(settings, rendered, "ahseng@example.sg")
        with pytest.raises(EmailFailed) as anonymous:
            deliver(settings.with_(smtp_port=port), message)  # no user configured: no login, refused
        assert anonymous.value.details.get("smtp_code") == 530, anonymous.value.details
        with pytest.raises(EmailFailed) as wrong:
            deliver(settings.with_(smtp_port=port, smtp_user="invoices", smtp_password="nope"), message)
        assert wrong.value.details.get("smtp_code") == 535, wrong.value.details
        deliver(settings.with_(smtp_port=port, smtp_user="invoices", smtp_password="s3cret"), message)
    finally:
        controller.stop()
    # smtplib tries each offered mechanism (PLAIN, LOGIN) before giving up; nothing logs in without a user.
    assert set(logins) == {("invoices", "nope"), ("invoices", "s3cret")} and logins[-1] == ("invoices", "s3cret")
    assert len(box.messages) == 1


def test_a_refusing_server_is_email_failed_with_the_reason_and_nothing_changes(demo, settings, refusing) -> None:
    invoice_id = make_invoice(demo)
    before = status_of(demo, invoice_id)
    with pytest.raises(EmailFailed) as failure:
        email_invoice(demo, settings.with_(smtp_port=refusing), ADMIN, invoice_id)
    assert failure.value.status == 502 and failure.value.code == "email_failed"
    assert failure.value.details["smtp_code"] == 554
    assert "Message rejected" in failure.value.details["reason"]
    assert status_of(demo, invoice_id) == before == ("generated", None, 1)


def test_email_endpoint_refused_and_unreachable_servers(demo, settings, db, refusing, driver_headers) -> None:
    from starlette.testclient import TestClient

    invoice_id = make_invoice(demo)
    for port in (refusing, free_port()):
        app = create_app(settings.with_(smtp_port=port), db)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            response = client.post(f"/api/v1/invoices/{invoice_id}/email/", headers=driver_headers)
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["code"] == "email_failed" and error["details"]["reason"]
    assert status_of(demo, invoice_id) == ("generated", None, 1)
    assert events(demo, invoice_id) == []


def test_email_endpoint_validates_the_recipient(client, demo, driver_headers) -> None:
    invoice_id = make_invoice(demo, customer_email=None)
    url = f"/api/v1/invoices/{invoice_id}/email/"
    missing = client.post(url, headers=driver_headers)
    assert missing.status_code == 400 and missing.json()["error"]["details"]["field"] == "to"
    for bad in ("not-an-address", "a@b.sg\r\nBcc: victim@example.sg", "Evil <evil@example.sg>"):
        response = client.post(url, headers=driver_headers, json={"to": bad})
        assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "to", bad
    unknown = client.post(url, headers=driver_headers, json={"cc": "x@example.sg"})
    assert unknown.status_code == 400


def test_email_endpoint_sends_the_pdf_and_marks_the_invoice_emailed(
    demo, settings, db, inbox, driver_headers, other_driver_headers, tmp_path
) -> None:
    from starlette.testclient import TestClient

    box, port = inbox
    invoice_id = make_invoice(demo)
    other_id = make_invoice(demo, seq=2, customer_id=2, customer_email="hocklee@example.sg")
    app = create_app(settings.with_(smtp_port=port), db)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        hidden = client.post(f"/api/v1/invoices/{invoice_id}/email/", headers=other_driver_headers)
        assert hidden.status_code == 404 and box.messages == []
        response = client.post(f"/api/v1/invoices/{invoice_id}/email/", headers=driver_headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "emailed" and response.json()["to"] == "ahseng@example.sg"
        again = client.post(
            f"/api/v1/invoices/{invoice_id}/email/", headers=driver_headers, json={"to": "accounts@ahseng.sg"}
        )
        assert again.status_code == 200 and again.json()["to"] == "accounts@ahseng.sg"
    assert [m[1] for m in box.messages] == [["ahseng@example.sg"], ["accounts@ahseng.sg"]]
    name, pdf = attachment(box.messages[0][2])
    assert name == "INV-2026-000001.pdf" and pdf.startswith(b"%PDF-")
    content = pdf_text(pdf, tmp_path)
    assert "INV-2026-000001" in content and "INV-2026-000002" not in content
    status, emailed_at, _version = status_of(demo, invoice_id)
    assert status == "emailed" and emailed_at is not None
    assert status_of(demo, other_id)[0] == "generated"


def test_the_outbox_sends_and_records_emailed_with_its_message_id(demo, settings, inbox) -> None:
    box, port = inbox
    invoice_id = make_invoice(demo)
    on = settings.with_(smtp_port=port, auto_email=True)
    row = queue(demo, on, invoice_id)
    assert send_all(demo, on) == "sent"
    assert len(box.messages) == 1 and status_of(demo, invoice_id)[0] == "emailed"
    assert "emailed" in [kind for kind, _ in events(demo, invoice_id)]
    message_id = demo.read(lambda s: s.get(EmailOutbox, row).message_id)
    assert box.messages[0][2]["Message-ID"] == message_id and "INV-2026-000001" in message_id


def test_the_outbox_retries_then_records_email_failed_and_keeps_the_status(demo, settings, refusing) -> None:
    invoice_id = make_invoice(demo)
    audits = demo.read(lambda s: s.execute(select(func.count()).select_from(AuditEntry)).scalar_one())
    on = settings.with_(smtp_port=refusing, auto_email=True, email_attempts=3)
    queue(demo, on, invoice_id)
    assert send_all(demo, on) == "failed"
    assert demo.read(lambda s: s.scalars(select(EmailOutbox.attempts)).one()) == 3
    assert status_of(demo, invoice_id) == ("generated", None, 1)
    recorded = events(demo, invoice_id)
    assert [kind for kind, _ in recorded] == ["email_failed"]
    assert "ahseng@example.sg" in (recorded[0][1] or "") and "Message rejected" in (recorded[0][1] or "")
    after = demo.read(lambda s: s.execute(select(func.count()).select_from(AuditEntry)).scalar_one())
    assert after == audits + 1


def test_the_outbox_without_an_address_fails_at_once_saying_why(demo, settings) -> None:
    invoice_id = make_invoice(demo, customer_email=None)
    on = settings.with_(auto_email=True)
    queue(demo, on, invoice_id)
    assert send_all(demo, on) == "failed"
    assert demo.read(lambda s: s.scalars(select(EmailOutbox.attempts)).one()) == 1
    assert events(demo, invoice_id) == [("email_failed", "to -: the customer has no e-mail address")]
