"""Audit cases of the invoice e-mail path (domain/invoicing/outputs/mail.py), with a real SMTP server on
127.0.0.1: a sent e-mail is the invoice's `mark_emailed` entry; a refused send writes nothing (the status
does not move); an automatic e-mail that fails for good writes one `email_failed` entry."""

from __future__ import annotations

from typing import Any

import orjson

from domain.accounts.policy import Actor
from domain.errors import EmailFailed
from domain.invoicing.outputs.mail import email_invoice
from domain.sales.services import create_transaction
from tests.support.audit_cases import AuditCase, AuditWorld, entry
from tests.support.outbox_support import queue, send_all
from tests.support.outputs_smtp import Inbox, running
from tests.support.sales_support import full, sale

SOLD = [entry("confirm", "transaction", "after", "stock", actor="driver"), entry("create", "invoice", actor="driver")]
REFUSE = "554 5.7.1 Message rejected"


def invoice(world: AuditWorld) -> int:
    outcome = world.call(lambda call: create_transaction(call, sale(deliveries=[full("CYL9", 1)])), "driver")
    return int(outcome.related["invoice"].id)


def send(refuse: str | None) -> Any:
    def perform(world: AuditWorld) -> Any:
        inv = invoice(world)
        box = Inbox(refuse)
        admin = Actor(world.users["admin"], "admin", "admin")
        with running(box) as port:
            settings = world.settings.with_(smtp_port=port)
            if refuse is None:
                email_invoice(world.db, settings, admin, inv)
                assert len(box.messages) == 1
                return inv
            try:
                email_invoice(world.db, settings, admin, inv)
            except EmailFailed:
                return inv
        raise AssertionError("a refused message must be email_failed")

    return perform


def check_sent(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = orjson.loads(next(e.context for e in log if e.action == "mark_emailed"))
    assert (ctx["before"]["status"], ctx["after"]["status"]) == ("generated", "emailed")
    assert log[-1].entity_id == result


def auto_failure(world: AuditWorld) -> Any:
    inv = invoice(world)
    with running(Inbox(REFUSE)) as port:
        on = world.settings.with_(smtp_port=port, auto_email=True, email_attempts=2)
        queue(world.db, on, inv)
        assert send_all(world.db, on) == "failed"
    return inv


def check_failure(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = orjson.loads(log[-1].context)
    assert ctx["after"]["to"] == "ahseng@example.sg" and "Message rejected" in ctx["after"]["reason"]
    assert log[-1].entity_id == result


CASES = [
    AuditCase(
        "outputs_email_invoice_marks_it_emailed",
        send(None),
        [*SOLD, entry("mark_emailed", "invoice", "before", "after", actor="admin")],
        check=check_sent,
    ),
    AuditCase("outputs_email_refused_writes_nothing", send(REFUSE), SOLD),
    AuditCase(
        "outputs_auto_email_failure_is_audited",
        auto_failure,
        [*SOLD, entry("email_failed", "invoice", actor="driver")],
        check=check_failure,
    ),
]
