"""Two server processes on one database, 50 simulated devices pushing and pulling through either of them for
a bounded time (LPG_SOAK_SECONDS, 60 in CI): no 5xx, no change lost or applied twice, no feed gap, and every
device finally holds, for its scope, exactly the server's latest versions (its own pushes included, whichever
server took them)."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from domain.db import Database
from domain.settings import Settings
from tests.conftest import SECRET, bearer
from tests.integration.test_pull_processes import Follower, final_versions
from tests.reliability.processes import Server
from tests.reliability.support import SUMMARY, assert_applied_once, sales_batch, state
from tests.reliability.test_database_restart import give_truck_stock

FIRST_PORT = 18140
DEVICES = 50
SECONDS = float(os.environ.get("LPG_SOAK_SECONDS", "60"))
DRIVERS = (2, 3)  # driver1, driver2 of the demo data


@pytest.mark.mysql_only
def test_fifty_devices_on_two_servers(demo: Database, settings: Settings, tmp_path: Path) -> None:
    servers = [Server(settings.database_url, FIRST_PORT + n, SECRET, tmp_path / f"server{n}.log") for n in range(2)]
    for server in servers:
        server.start("--no-migrate", "--no-demo")
    try:
        give_truck_stock(demo)
        before = state(demo)
        statuses: dict[int, int] = {}
        pushed = [0] * DEVICES
        followers: list[tuple[int, Follower]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        end = time.monotonic() + SECONDS
        clients = [httpx.Client(base_url=s.url, timeout=120) for s in servers]

        def count(status: int) -> None:
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

        def device(n: int) -> None:
            rnd = random.Random(n)
            user = DRIVERS[n % 2]
            headers = bearer(settings, user)

            def get(since: int, limit: int) -> dict[str, Any]:
                # Pages of up to 100 (not the follower's 2-6): 50 devices start from 0 and must catch up.
                response = rnd.choice(clients).get(
                    "/api/v1/sync/changes", params={"since": since, "limit": limit * 20}, headers=headers
                )
                count(response.status_code)
                assert response.status_code == 200, response.text
                return response.json()

            follower = Follower(get, n)
            followers.append((user, follower))
            try:
                while time.monotonic() < end:
                    envelope = {"device_id": f"tab-s{n}", "changes": sales_batch(f"s{n}b{pushed[n]}", 1)}
                    response = rnd.choice(clients).post("/api/v1/sync/push", json=envelope, headers=headers)
                    count(response.status_code)
                    assert response.status_code == 200, response.text
                    assert {r["status"] for r in response.json()["results"]} == {"applied"}
                    pushed[n] += 1
                    for _ in range(rnd.randint(1, 3)):
                        follower.step()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=device, args=(n,)) for n in range(DEVICES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS + 300)
        assert not errors, errors[:3]
        batches = sum(pushed)
        for _, follower in followers:
            follower.drain()
        expected = {user: final_versions(demo, user) for user in DRIVERS}
        for user, follower in followers:
            assert follower.seen == expected[user], "a device's copy differs from the server's state (a gap)"
        assert all(s < 500 for s in statuses), statuses
        line = f"two servers, {DEVICES} devices, {SECONDS:.0f} s: {batches} pushes, requests by status {statuses}"
        SUMMARY[line] += 1
        print(line)
        assert_applied_once(demo, before, batches=batches, per_batch=1)
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
