"""Writing feed rows the way the business services will: real ORM rows, `record_change`, `Database.run`.

The services are being built in parallel; these helpers stand in for them with the real models and the real
ledger, so the pull side is tested against exactly what the write side will commit.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from domain.catalog.docs import customer_doc
from domain.catalog.models import Customer
from domain.clock import rfc3339, utcnow
from domain.db import Database
from domain.feed.services import record_change
from domain.invoicing.models import Invoice
from domain.logistics.models import Distribution
from domain.sales.models import MeterReading, Transaction
from tests.support.children import stop_child, wait_healthy

OWNED = ("transaction", "invoice", "distribution", "meter_reading")


def _doc(entity: str, row: Any) -> dict[str, Any]:
    base = {"id": row.id, "version": row.version, "last_modified": rfc3339(row.last_modified)}
    return {**base, "driver": row.driver_id, "kind": entity}


def create_owned(db: Database, entity: str, driver_id: int) -> int:
    """One new record of an owned entity for `driver_id`, with its feed entry; returns its id."""

    def work(uow: Any) -> int:
        s = uow.session
        now = utcnow()
        if entity == "transaction":
            row: Any = Transaction(customer_id=1, truck_id=1, driver_id=driver_id, occurred_at=now)
        elif entity == "distribution":
            row = Distribution(depot_id=1, truck_id=1, driver_id=driver_id, occurred_at=now)
        elif entity == "meter_reading":
            row = MeterReading(meter_id=1, customer_id=1, reading=Decimal("1.00"), occurred_at=now, driver_id=driver_id)
        elif entity == "invoice":
            trx = Transaction(customer_id=1, truck_id=1, driver_id=driver_id, occurred_at=now)
            s.add(trx)
            s.flush()
            row = Invoice(
                number=f"INV-T-{trx.id}",
                transaction_id=trx.id,
                customer_id=1,
                driver_id=driver_id,
                customer_name="x",
                subtotal=Decimal("1.00"),
                gst_rate=Decimal("0.09"),
                gst=Decimal("0.09"),
                total=Decimal("1.09"),
            )
        else:
            raise ValueError(entity)
        s.add(row)
        s.flush()
        record_change(s, entity, row, doc=lambda: _doc(entity, row), scope=driver_id)
        return int(row.id)

    return db.run(work)


def touch_owned(db: Database, entity: str, record_id: int) -> None:
    model = {
        "transaction": Transaction,
        "distribution": Distribution,
        "meter_reading": MeterReading,
        "invoice": Invoice,
    }[entity]

    def work(uow: Any) -> None:
        row = uow.session.get(model, record_id)
        row.touch(utcnow())
        record_change(uow.session, entity, row, doc=lambda: _doc(entity, row), scope=row.driver_id)

    db.run(work)


def update_customer(db: Database, customer_id: int, delay: float = 0.0) -> None:
    """A customer update (reference data, scope 0), the row locked like a service would."""
    import time

    def work(uow: Any) -> None:
        row = uow.session.scalars(select(Customer).where(Customer.id == customer_id).with_for_update()).one()
        row.phone = f"+65 6{row.version:07d}"
        row.touch(utcnow() + timedelta(microseconds=1))
        record_change(uow.session, "customer", row, doc=lambda: customer_doc(row))
        if delay:
            time.sleep(delay)

    db.run(work)


# -- uvicorn processes on 127.0.0.1 -------------------------------------------------------------------------


class ServerProcess:
    """`uvicorn server:create_app_from_env` in a child process on a free port of 127.0.0.1."""

    def __init__(self, database_url: str, secret: str, log_path: str, *extra: str, pool: int = 8) -> None:
        import os
        import socket
        import subprocess
        import sys
        from pathlib import Path

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            LPG_DATABASE_URL=database_url,
            LPG_SECRET_KEY=secret,
            LPG_ENV="test",
            LPG_SQLITE_SYNCHRONOUS="NORMAL",
            LPG_DB_POOL_SIZE=str(pool),
        )
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "server:create_app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                *extra,
            ],
            cwd=str(Path(__file__).resolve().parents[2]),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_healthy(self.proc, self.url, timeout)

    def stop(self) -> None:
        stop_child(self.proc, grace=10)
        self.log.close()
