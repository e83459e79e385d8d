"""The invoice e-mail outbox (LPG_AUTO_EMAIL): nothing the e-mail needs lives in process memory.

- A confirm (REST or sync) writes an `email_outbox` row in its own transaction (`enqueue`): a rolled-back
  confirm, a dry run or a refused atomic batch leaves no row; a duplicate push re-runs nothing, so it adds
  none. The row's Message-ID is fixed there, once per invoice.
- Every server process runs a `Sender` thread (started by the app's lifespan when LPG_AUTO_EMAIL is on). It
  claims due rows with a lease: `SELECT ... FOR UPDATE SKIP LOCKED` then an UPDATE of the lease on MariaDB;
  one `UPDATE ... WHERE lease expired` on SQLite (whose write transactions are serialised). It renders the
  PDF and sends outside any transaction, then records the outcome in one short unit: `sent` together with
  the invoice's `mark_emailed`, or a new try after an exponential backoff, or, after the last try (or at
  once when the invoice has no usable address), `failed` with an `email_failed` event and audit entry.
- Exactly once, as far as SMTP allows: a process that dies between the SMTP server's "250" and the commit
  that records it leaves the row leased; when the lease lapses another process sends it again with the SAME
  Message-ID. The receiving side de-duplicates by Message-ID (mail stores and most clients do); that window
  is the only way a customer can get a message twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update

from domain import metrics
from domain.accounts.policy import Actor
from domain.audit.services import audit
from domain.clock import utcnow
from domain.db import Database
from domain.errors import EmailFailed, InvalidState, NotFound
from domain.invoicing import services as invoicing
from domain.invoicing.models import EmailOutbox, Invoice
from domain.invoicing.outputs.mail import (
    build_message,
    deliver,
    invoice_owner,
    record_email_failure,
    valid_address,
)
from domain.invoicing.outputs.pdf import invoice_pdf
from domain.ledger import Staged, holds_numbers, stage
from domain.service import Call, Outcome
from domain.settings import Settings

log = logging.getLogger("lpg.outbox")
OUTBOX: Table = EmailOutbox.__table__  # type: ignore[assignment]
CLAIM_LIMIT = 5
SENDER_HEADER = "X-LPG-Sender"


def sender_name() -> str:
    """This process, as it signs the rows it sends and the messages (`host/pid`; read after a fork)."""
    return f"{socket.gethostname()}/{os.getpid()}"[:100]


def message_id_for(settings: Settings, number: str) -> str:
    domain = settings.mail_from.rpartition("@")[2] or "lpg-sync.invalid"
    return f"<{number}.{uuid.uuid4().hex}@{domain}>"


def enqueue(call: Call, invoice: Staged) -> Staged | None:
    """With LPG_AUTO_EMAIL on, the e-mail of a just-issued invoice, written with the confirm."""
    if not call.settings.auto_email:
        return None
    message_id = message_id_for(call.settings, invoice.number)
    holds_numbers(call.session, OUTBOX.c.message_id, message_id)  # the number is given at the commit
    return stage(
        call.session,
        OUTBOX,
        {
            "invoice_id": invoice,
            "message_id": message_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": call.now,
            "lease_until": None,
            "lease_token": None,
            "last_error": None,
            "created_at": call.now,
            "sent_at": None,
            "sent_by": None,
        },
    )


# -- claiming and recording ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    invoice_id: int
    message_id: str
    attempts: int  # including this one
    token: str


def claim(db: Database, settings: Settings, limit: int = CLAIM_LIMIT) -> list[Claimed]:
    """Lease up to `limit` due rows to this caller (none that another sender holds); counts the attempt."""
    token = uuid.uuid4().hex

    def work(uow: Any) -> list[Claimed]:
        session = uow.session
        now = utcnow()
        lease = {
            "lease_until": now + timedelta(seconds=settings.outbox_lease_seconds),
            "lease_token": token,
            "attempts": OUTBOX.c.attempts + 1,
        }
        due = and_(
            OUTBOX.c.status == "pending",
            OUTBOX.c.next_attempt_at <= now,
            or_(OUTBOX.c.lease_until.is_(None), OUTBOX.c.lease_until < now),
        )
        oldest = select(OUTBOX.c.id).where(due).order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id).limit(limit)
        if db.dialect == "mysql":
            ids = list(session.scalars(oldest.with_for_update(skip_locked=True)))
            if not ids:
                return []
            session.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(**lease))
        else:  # one writer at a time (BEGIN IMMEDIATE): the UPDATE's own WHERE is the claim
            session.execute(update(OUTBOX).where(OUTBOX.c.id.in_(oldest.scalar_subquery())).values(**lease))
        rows = session.execute(
            select(OUTBOX.c.id, OUTBOX.c.invoice_id, OUTBOX.c.message_id, OUTBOX.c.attempts)
            .where(OUTBOX.c.lease_token == token)
            .order_by(OUTBOX.c.id)
        ).all()
        return [Claimed(r.id, r.invoice_id, r.message_id, r.attempts, token) for r in rows]

    return db.run(work)


def _locked(session: Any, row_id: int) -> EmailOutbox:
    return session.execute(select(EmailOutbox).where(EmailOutbox.id == row_id).with_for_update()).scalar_one()


def record_sent(db: Database, settings: Settings, row: Claimed, actor: Actor) -> bool:
    """The message has left: the row `sent` and the invoice `emailed`, in one unit. False when another
    sender recorded it first (it sent it again after this one's lease lapsed)."""

    def work(uow: Any) -> bool:
        item = _locked(uow.session, row.id)
        if item.status == "sent":
            return False
        now = utcnow()
        item.status, item.sent_at, item.sent_by = "sent", now, sender_name()
        item.lease_until = item.lease_token = item.last_error = None
        invoicing.mark_emailed(Call(uow.session, actor, settings, now=now), row.invoice_id)
        return True

    return db.run(work)


def record_failure(
    db: Database, settings: Settings, row: Claimed, actor: Actor | None, reason: str, to: str | None, *, final: bool
) -> str:
    """A try that failed: another one after a backoff (`backoff x 2^(attempts-1)`), or, after the last try
    or when no try can help (`final`), `failed` with an `email_failed` event and audit entry."""

    def work(uow: Any) -> str:
        item = _locked(uow.session, row.id)
        if item.status != "pending" or item.lease_token != row.token:
            return item.status  # another sender took it over meanwhile: its outcome counts
        now = utcnow()
        item.last_error = reason[:2000]
        item.lease_until = item.lease_token = None
        if final or item.attempts >= settings.email_attempts:
            item.status = "failed"
            if actor is not None:
                record_email_failure(Call(uow.session, actor, settings, now=now), row.invoice_id, reason, to)
            return "failed"
        pause = settings.email_backoff_seconds * 2 ** (item.attempts - 1)
        item.next_attempt_at = now + timedelta(seconds=pause)
        return "pending"

    return db.run(work)


def send(db: Database, settings: Settings, row: Claimed) -> str:
    """One try of one claimed row; returns its status afterwards (`sent`, `pending` or `failed`)."""
    status = _send(db, settings, row)
    metrics.EMAILS.labels(outcome={"pending": "retry"}.get(status, status)).inc()
    return status


def _send(db: Database, settings: Settings, row: Claimed) -> str:
    try:
        actor = invoice_owner(db, row.invoice_id)
        rendered = invoice_pdf(db, settings, actor, row.invoice_id)
    except Exception as exc:  # the database or a bug: try again later, like an unreachable mail server
        log.exception("outbox row %s: invoice %s could not be read or rendered", row.id, row.invoice_id)
        return record_failure(db, settings, row, None, f"{type(exc).__name__}: {exc}", None, final=False)
    to = rendered.view.customer_email or None
    if not to or not valid_address(to):
        reason = "the customer has no e-mail address" if not to else f"not an e-mail address: {to!r}"
        return record_failure(db, settings, row, actor, reason, None, final=True)
    message = build_message(settings, rendered, to, row.message_id, {SENDER_HEADER: sender_name()})
    try:
        deliver(settings, message)
    except EmailFailed as exc:
        reason = f"{exc.message}: {exc.details.get('reason')}"
        log.warning("e-mail of %s failed (attempt %d of %d): %s", rendered.view.number, row.attempts,
                    settings.email_attempts, reason)  # fmt: skip
        return record_failure(db, settings, row, actor, reason, to, final=False)
    except Exception as exc:  # a bug rather than the server: recorded like a failed try, never lost
        log.exception("e-mail of %s failed (attempt %d)", rendered.view.number, row.attempts)
        return record_failure(db, settings, row, actor, f"{type(exc).__name__}: {exc}", to, final=False)
    # The message has left. Until the commit below, a crash means one more send with the same Message-ID.
    if record_sent(db, settings, row, actor):
        log.info("invoice %s e-mailed to %s (%s)", rendered.view.number, to, row.message_id)
    return "sent"


def run_once(db: Database, settings: Settings) -> int:
    """Claim the due rows and try each once; returns how many were tried."""
    rows = claim(db, settings)
    for row in rows:
        try:
            send(db, settings, row)
        except Exception:  # recording failed (the database is away): the lease lapses and it is tried again
            log.exception("outbox row %s: the outcome could not be recorded", row.id)
    return len(rows)


class Sender:
    """The outbox sender of this process: a thread that polls for due rows every `outbox_poll_seconds`
    (at once again after a busy round) until `stop`."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lpg-outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = run_once(self.db, self.settings)
            except Exception:
                log.exception("the outbox sender could not claim rows; trying again")
                busy = 0
            if not busy:
                self._stop.wait(self.settings.outbox_poll_seconds)


# -- what the admin sees and does ----------------------------------------------------------------------


def outbox_doc(item: EmailOutbox, number: str | None = None) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        from domain.clock import rfc3339

        return rfc3339(value) if value is not None else None

    return {
        "id": item.id,
        "invoice": item.invoice_id,
        "invoice_number": number,
        "message_id": item.message_id,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": at(item.next_attempt_at),
        "leased_until": at(item.lease_until),
        "last_error": item.last_error,
        "created_at": at(item.created_at),
        "sent_at": at(item.sent_at),
        "sent_by": item.sent_by,
    }


def retry(call: Call, row_id: int) -> Outcome:
    """Send a `failed` e-mail again: back to `pending`, due now, a fresh count of tries, the same
    Message-ID; audited as `email_retry` on the invoice. A pending or sent one is `invalid_state`."""
    session = call.session
    item = session.execute(select(EmailOutbox).where(EmailOutbox.id == row_id).with_for_update()).scalar_one_or_none()
    if item is None:
        raise NotFound(f"outbox row {row_id} not found", {"entity": "outbox", "id": row_id})
    if item.status != "failed":
        raise InvalidState(
            f"outbox row {row_id} is {item.status}: only a failed e-mail can be retried",
            {"entity": "outbox", "id": row_id, "status": item.status},
        )
    invoice = session.get(Invoice, item.invoice_id)
    assert invoice is not None, "a foreign key"
    item.status, item.attempts, item.next_attempt_at = "pending", 0, call.now
    audit(
        session, call.actor.id, call.device_id, "email_retry", "invoice", invoice,
        after={"number": invoice.number, "outbox": item.id, "message_id": item.message_id},
    )  # fmt: skip
    return Outcome("outbox", item)


@dataclass(frozen=True)
class Depth:
    pending: int
    failed: int
    oldest_pending_at: datetime | None


def depth(session: Any) -> Depth:
    """How many e-mails wait or failed, and since when the oldest waits (the metrics read this)."""
    rows = dict(
        session.execute(
            select(EmailOutbox.status, func.count()).where(EmailOutbox.status != "sent").group_by(EmailOutbox.status)
        ).all()
    )
    oldest = session.execute(select(func.min(EmailOutbox.created_at)).where(EmailOutbox.status == "pending")).scalar()
    return Depth(int(rows.get("pending", 0)), int(rows.get("failed", 0)), oldest)
