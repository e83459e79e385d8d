"""Driving the invoice e-mail outbox by hand in tests: queue an existing invoice's e-mail, and run the
sender's rounds in the test's own thread until nothing is due (deterministic, no background thread)."""

from __future__ import annotations

from sqlalchemy import select

from domain.clock import utcnow
from domain.db import Database
from domain.invoicing import outbox
from domain.invoicing.models import EmailOutbox, Invoice
from domain.settings import Settings


def queue(db: Database, settings: Settings, invoice_id: int) -> int:
    """The outbox row a confirm with LPG_AUTO_EMAIL on would have written for this invoice."""

    def work(uow: object) -> int:
        session = uow.session  # type: ignore[attr-defined]
        number = session.execute(select(Invoice.number).where(Invoice.id == invoice_id)).scalar_one()
        row = EmailOutbox(
            invoice_id=invoice_id,
            message_id=outbox.message_id_for(settings, number),
            status="pending",
            attempts=0,
            next_attempt_at=utcnow(),
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return int(row.id)

    return db.run(work)


def send_all(db: Database, settings: Settings, rounds: int = 20) -> str:
    """Run sender rounds until no row is due (backoff 0 makes every retry due at once); the last status."""
    settings = settings.with_(email_backoff_seconds=0.0)
    for _ in range(rounds):
        if outbox.run_once(db, settings) == 0:
            break
    statuses = db.read(lambda s: s.scalars(select(EmailOutbox.status).order_by(EmailOutbox.id)).all())
    return statuses[-1] if statuses else "none"
