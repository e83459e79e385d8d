"""A MariaDB restart under load: the server keeps running, answers 503 with Retry-After while the database
is gone, recovers on its own when it is back, and every batch ends up applied exactly once after resends."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import text

from domain.db import Database
from tests.conftest import SECRET, bearer
from tests.conftest import test_settings as settings_for
from tests.reliability.processes import PrivateMariaDB, Server
from tests.reliability.support import SUMMARY, assert_applied_once, sales_batch, state

SERVER_PORT = 18120
DEVICES = 4
BATCHES_PER_DEVICE = 12
PER_BATCH = 3


def give_truck_stock(db: Database, full: int = 1_000_000) -> None:
    """Enough full CYL9 on truck 1 that no sale of the load is refused for stock."""
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE truck_stock SET full = :full WHERE truck_id = 1 AND equipment_id = 1"), {"full": full}
        )


def push_until_applied(
    client: httpx.Client, headers: dict[str, str], envelope: dict[str, Any], answers: list[int], deadline: float
) -> dict[str, Any]:
    """Send the batch until it is answered 200, as a device would: a 503 waits Retry-After (capped), a lost
    connection waits a little; every status seen is recorded."""
    while True:
        assert time.monotonic() < deadline, "the batch was never applied"
        try:
            response = client.post("/api/v1/sync/push", json=envelope, headers=headers, timeout=60)
        except httpx.HTTPError:
            answers.append(0)
            time.sleep(0.3)
            continue
        answers.append(response.status_code)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        time.sleep(min(1.0, int(response.headers["Retry-After"])))


@pytest.mark.mysql_only
def test_the_server_survives_a_database_restart_under_load(private_mariadb: PrivateMariaDB, tmp_path: Path) -> None:
    url = private_mariadb.create_database("lpg_restart")
    server = Server(url, SERVER_PORT, SECRET, tmp_path / "server.log")
    server.start()
    check = Database(settings_for(url))
    try:
        give_truck_stock(check)
        before = state(check)
        headers = bearer(check.settings, 2)  # driver1 of the demo data
        answers: list[int] = []
        errors: list[BaseException] = []
        deadline = time.monotonic() + 240

        def device(n: int) -> None:
            try:
                with httpx.Client(base_url=server.url) as client:
                    for b in range(BATCHES_PER_DEVICE):
                        envelope = {"device_id": f"tab-r{n}", "changes": sales_batch(f"r{n}b{b}", PER_BATCH)}
                        body = push_until_applied(client, headers, envelope, answers, deadline)
                        assert {r["status"] for r in body["results"]} <= {"applied", "duplicate"}
                        time.sleep(0.05)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=device, args=(n,)) for n in range(DEVICES)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        private_mariadb.kill()  # mid-load, without warning
        time.sleep(1.0)
        health = httpx.get(server.url + "/api/v1/health", timeout=30)
        assert health.status_code == 503 and int(health.headers["Retry-After"]) >= 1, health.text
        time.sleep(1.0)
        private_mariadb.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        assert server.alive and server.starts == 1, "the server recovered without a restart of its own"
        assert httpx.get(server.url + "/api/v1/health", timeout=10).status_code == 200
        statuses = {s: answers.count(s) for s in sorted(set(answers))}
        assert set(statuses) <= {0, 200, 503}, statuses
        SUMMARY[f"database restart: answers {statuses}"] += 1
        print(f"database restart under load: answers by status {statuses} (0 = connection refused)")
        check.dispose()
        check = Database(settings_for(url))
        assert_applied_once(check, before, batches=DEVICES * BATCHES_PER_DEVICE, per_batch=PER_BATCH)
    finally:
        server.stop()
        check.dispose()
