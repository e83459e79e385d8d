"""The invoice e-mail outbox across real server processes: two `python server.py` on one database, a real
SMTP server (aiosmtpd), and one sender killed with SIGKILL after the SMTP server took its message but
before it could record it. Every invoice's e-mail arrives, each invoice ends `emailed`, and a Message-ID
arrives twice only for that one message (the documented crash window: the resend carries the same id)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import select

from domain.db import Database
from domain.invoicing.models import EmailOutbox, Invoice
from domain.settings import Settings
from tests.conftest import bearer
from tests.support.outbox_support import Server
from tests.support.outputs_smtp import running
from tests.support.sales_support import full, sale_payload
from tests.support.sync_support import recent

ROOT = Path(__file__).resolve().parents[2]
PORTS = (18610, 18611)
SALES = 12
KILL_AT = 3  # the SMTP server kills the sender of the 3rd message it receives, before answering it


class KillingInbox:
    """Keeps every message; on the KILL_AT-th, sends SIGKILL to the process that sent it (named by the
    message's X-LPG-Sender header, `host/pid`) before answering: that sender never learns it was taken."""

    def __init__(self, allowed: set[int]) -> None:
        self.allowed = allowed
        self.messages: list[Any] = []
        self.killed: tuple[int, str] | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
            if len(self.messages) == KILL_AT and self.killed is None:
                pid = int(str(message["X-LPG-Sender"]).rpartition("/")[2])
                assert pid in self.allowed, "only a server started by this test is killed"
                os.kill(pid, signal.SIGKILL)
                self.killed = (pid, str(message["Message-ID"]))
        return "250 Message accepted for delivery"


@pytest.fixture
def servers(demo: Database, settings: Settings, tmp_path: Path) -> Iterator[tuple[list[Server], KillingInbox]]:
    box = KillingInbox(set())
    with running(box) as smtp_port:  # type: ignore[arg-type]
        env = {
            "LPG_AUTO_EMAIL": "true",
            "LPG_SMTP_HOST": "127.0.0.1",
            "LPG_SMTP_PORT": str(smtp_port),
            "LPG_OUTBOX_POLL_SECONDS": "0.1",
            "LPG_OUTBOX_LEASE_SECONDS": "15",  # above render + send time even on a loaded machine
            "LPG_EMAIL_BACKOFF_SECONDS": "0.2",
        }
        started = [Server(settings, port, tmp_path / f"server{port}.log", env) for port in PORTS]
        box.allowed = {s.proc.pid for s in started}
        try:
            for server in started:
                server.wait_ready()
            yield started, box
        finally:
            for server in started:
                server.stop()


def outbox(db: Database) -> list[tuple[int, str, str, int]]:
    rows = db.read(
        lambda s: s.execute(
            select(EmailOutbox.invoice_id, EmailOutbox.message_id, EmailOutbox.status, EmailOutbox.attempts)
        ).all()
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.slow
def test_two_processes_and_a_kill_between_sending_and_recording(
    servers: tuple[list[Server], KillingInbox], demo: Database, settings: Settings
) -> None:
    started, box = servers
    headers = bearer(settings, 2)

    def post(n: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """To one server, or the other when that one is the killed one (a sale is never lost here: every
        invoice in the database is checked below, whichever request made it)."""
        for server in (started[n % 2], started[(n + 1) % 2]):
            try:
                answer = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
            except httpx.HTTPError:
                continue
            assert answer.status_code in (200, 201), answer.text
            return answer.json()  # type: ignore[no-any-return]
        raise AssertionError("no server answered")

    for n in range(SALES):
        payload = sale_payload(deliveries=[full("CYL9", 1)])
        if n % 3 == 2:  # a third through sync push, the rest over REST
            change = {
                "client_temp_id": f"s-{n}",
                "op": "transaction.create",
                "data": {**payload, "occurred_at": recent()},
            }
            result = post(n, "/api/v1/sync/push", {"device_id": "tab-outbox", "changes": [change]})["results"][0]
            assert result["status"] in ("applied", "duplicate"), result
        else:
            post(n, "/api/v1/transactions/", payload)
    invoices = demo.read(lambda s: s.execute(select(Invoice.id)).scalars().all())
    assert len(invoices) >= SALES

    deadline = time.monotonic() + 180
    while any(status != "sent" for *_, status, _ in outbox(demo)) or box.killed is None:
        assert time.monotonic() < deadline, (outbox(demo), box.killed)
        time.sleep(0.2)

    assert box.killed is not None
    killed_pid, killed_message_id = box.killed
    assert next(s for s in started if s.proc.pid == killed_pid).proc.wait(10) == -signal.SIGKILL
    rows = outbox(demo)
    assert sorted(invoice for invoice, *_ in rows) == sorted(invoices)  # one row per invoice
    expected = {message_id for _, message_id, *_ in rows}
    received = Counter(str(m["Message-ID"]) for m in box.messages)
    assert set(received) == expected  # every invoice's e-mail arrived, nothing else did
    twice = {message_id for message_id, n in received.items() if n > 1}
    assert twice <= {killed_message_id}  # only the message whose sender died before recording it
    assert received[killed_message_id] == 2  # ... which was sent again, with the same Message-ID
    resent = [m for m in box.messages if str(m["Message-ID"]) == killed_message_id]
    assert int(str(resent[1]["X-LPG-Sender"]).rpartition("/")[2]) != killed_pid
    statuses = demo.read(lambda s: s.execute(select(Invoice.status).where(Invoice.id.in_(invoices))).scalars().all())
    assert statuses == ["emailed"] * len(invoices)
