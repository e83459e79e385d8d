"""Driving the invoice e-mail outbox by hand in tests: queue an existing invoice's e-mail, and run the
sender's rounds in the test's own thread until nothing is due (deterministic, no background thread)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from domain.clock import utcnow
from domain.db import Database
from domain.invoicing import outbox
from domain.invoicing.models import EmailOutbox, Invoice
from domain.settings import Settings
from tests.support.children import stop_child, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


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


class Server:
    """`python server.py` on 127.0.0.1:`port` (a port of this suite's range) on the test's database, with
    `env` on top of the test settings."""

    def __init__(self, settings: Settings, port: int, log: Path, env: dict[str, str] | None = None) -> None:
        from tests.conftest import SECRET

        self.url = f"http://127.0.0.1:{port}"
        environ = dict(
            os.environ,
            LPG_DATABASE_URL=settings.database_url,
            LPG_SECRET_KEY=SECRET,
            LPG_ENV="test",
            LPG_SQLITE_SYNCHRONOUS="NORMAL",
            LPG_DB_POOL_SIZE="6",
            **(env or {}),
        )
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "server.py", "--no-migrate", "--no-demo", "--port", str(port)],
            cwd=str(ROOT),
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 180.0) -> None:  # a loaded CI machine imports slowly
        wait_healthy(self.proc, self.url, timeout)

    def stop(self) -> None:
        stop_child(self.proc, grace=15)
        self.log.close()
