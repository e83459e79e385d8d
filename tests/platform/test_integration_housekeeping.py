"""Small defects: updates that change nothing write nothing; two creations of one code at the same moment
are one 201 and one 409 `conflict` (a unique key hit after the check is mapped, not a 500); `Accept:
application/pdf` alone gets the invoice PDF."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from domain.api import unique_conflict
from domain.audit.models import AuditEntry
from domain.db import Database
from domain.feed.models import FeedEntry
from domain.settings import Settings
from tests.conftest import bearer
from tests.support.outbox_support import Server
from tests.support.sales_support import full, sale_payload


def writes(db: Database) -> tuple[int, int]:
    def count(s: Any) -> tuple[int, int]:
        audits = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
        return audits, s.execute(select(func.max(FeedEntry.seq))).scalar() or 0

    return db.read(count)


SAME = [
    ("/api/v1/equipment/1/", {"name": None, "unit_price": None}),
    ("/api/v1/depots/1/", {"code": None, "name": None, "active": True}),
    ("/api/v1/trucks/1/", {"plate": None, "active": True}),
    ("/api/v1/services/1/", {"name": None, "active": True}),
    ("/api/v1/customers/1/", {"name": None, "email": None, "meter_rate": "3.20"}),
]


@pytest.mark.parametrize(("path", "fields"), SAME, ids=[p.split("/")[3] for p, _ in SAME])
def test_an_update_that_changes_nothing_writes_nothing(
    client: TestClient, admin_headers: dict[str, str], demo: Database, path: str, fields: dict[str, Any]
) -> None:
    current = client.get(path, headers=admin_headers).json()
    body = {name: current[name] if value is None else value for name, value in fields.items()}
    before = writes(demo)
    response = client.patch(path, json=body, headers=admin_headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["version"] == current["version"] and answer["last_modified"] == current["last_modified"]
    assert writes(demo) == before  # no audit entry, no feed entry
    changed = client.patch(path, json={**body, "active": False}, headers=admin_headers)
    assert changed.status_code == 200 and changed.json()["version"] == current["version"] + 1
    assert writes(demo) != before


def test_a_meter_update_and_a_price_override_that_change_nothing_write_nothing(
    client: TestClient, admin_headers: dict[str, str], demo: Database
) -> None:
    customer = client.get("/api/v1/customers/1/", headers=admin_headers).json()
    meter = customer["meters"][0]
    prices = {"prices": {"equipment": {"CYL9": "30.00"}}}
    assert client.patch("/api/v1/customers/1/", json=prices, headers=admin_headers).status_code == 200
    before, version = writes(demo), client.get("/api/v1/customers/1/", headers=admin_headers).json()["version"]
    again = client.patch("/api/v1/customers/1/", json=prices, headers=admin_headers)
    assert again.status_code == 200 and again.json()["version"] == version
    same = client.patch(
        f"/api/v1/customers/1/meters/{meter['id']}/",
        json={"serial": meter["serial"], "active": True},
        headers=admin_headers,
    )
    assert same.status_code == 200, same.text
    assert same.json()["version"] == version and writes(demo) == before


def test_concurrent_creations_of_one_code_are_one_201_and_one_409(
    demo: Database, settings: Settings, tmp_path: Path
) -> None:
    server = Server(settings, 18620, tmp_path / "server.log")
    try:
        server.wait_ready()
        headers = bearer(settings, 1)
        for path, body in (
            ("/api/v1/depots/", {"code": "RACE", "name": "Race depot"}),
            ("/api/v1/equipment/", {"code": "RACE", "name": "Race", "capacity_kg": "9.00", "unit_price": "1.00"}),
            ("/api/v1/trucks/", {"plate": "RACE-1"}),
            ("/api/v1/services/", {"code": "RACE", "name": "Race", "price": "1.00"}),
        ):
            barrier = threading.Barrier(2)
            answers: list[httpx.Response] = []

            def create(body: dict[str, Any] = body, path: str = path, barrier: threading.Barrier = barrier) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    barrier.wait(10)
                    answers.append(http.post(path, json=body, headers=headers))

            threads = [threading.Thread(target=create) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 409).json()["error"]
            assert refused["code"] == "conflict"
            assert refused["details"]["field"] in ("code", "plate")
    finally:
        server.stop()


@pytest.mark.parametrize(("table", "column"), [("depots", "code"), ("equipment", "code"), ("trucks", "plate")])
def test_a_unique_key_hit_after_the_check_is_a_conflict_naming_the_field(
    demo: Database, table: str, column: str
) -> None:
    """The path the race takes when both checks pass: the database refuses the second row."""
    row = demo.read(lambda s: s.execute(text(f"SELECT * FROM {table} ORDER BY id LIMIT 1")).mappings().one())
    columns = [c for c in row if c != "id"]
    params = {c: row[c] for c in columns}

    def insert(uow: Any) -> None:
        uow.session.execute(
            text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
            params,
        )

    with pytest.raises(IntegrityError) as caught:
        demo.run(insert)
    conflict = unique_conflict(caught.value)
    assert conflict is not None and conflict.status == 409 and conflict.code == "conflict"
    assert conflict.details == {"field": column, "table": table}


def test_accept_application_pdf_alone_gets_the_pdf(client: TestClient, driver_headers: dict[str, str]) -> None:
    sale = client.post("/api/v1/transactions/", json=sale_payload(deliveries=[full("CYL9", 1)]), headers=driver_headers)
    invoice = sale.json()["invoice"]["id"]
    response = client.get(f"/api/v1/invoices/{invoice}/pdf/", headers={**driver_headers, "Accept": "application/pdf"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf" and response.content.startswith(b"%PDF-")
    missing = client.get("/api/v1/invoices/999999/pdf/", headers={**driver_headers, "Accept": "application/pdf"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    refused = client.get(f"/api/v1/invoices/{invoice}/pdf/", headers={**driver_headers, "Accept": "image/png"})
    assert refused.status_code == 406


def test_a_login_prunes_old_attempts_a_bounded_batch_at_a_time(
    client: TestClient, demo: Database, settings: Settings
) -> None:
    from datetime import timedelta

    from domain.accounts.models import LoginAttempt
    from domain.accounts.throttle import PRUNE_BATCH
    from domain.clock import utcnow

    now = utcnow()
    old = [{"username": "ghost", "client_addr": "10.0.0.9", "at": now - timedelta(days=31), "succeeded": False}]
    recent_ = [{"username": "ghost", "client_addr": "10.0.0.9", "at": now - timedelta(days=29), "succeeded": False}]
    demo.run(lambda uow: uow.session.execute(LoginAttempt.__table__.insert(), old * (PRUNE_BATCH + 10) + recent_ * 3))

    def counts() -> tuple[int, int]:
        def q(s: Any) -> tuple[int, int]:
            cutoff = now - timedelta(days=30)
            older = s.execute(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.at < cutoff))
            newer = s.execute(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.at >= cutoff))
            return older.scalar_one(), newer.scalar_one()

        return demo.read(q)

    login = {"username": "admin", "password": "admin-lpg-2026"}
    assert client.post("/api/v1/auth/login/", json=login).status_code == 200
    assert counts() == (10, 3 + 1)  # one batch of the old ones gone; the kept ones and this login stay
    assert client.post("/api/v1/auth/login/", json=login).status_code == 200
    assert counts() == (0, 3 + 2)
