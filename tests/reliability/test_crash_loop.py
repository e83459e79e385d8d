"""A crash loop: servers (`python server.py` children on a private MariaDB) are killed with SIGKILL at random
moments while they apply large pushes and started again; every batch that got no answer is sent again (to
whichever server is up, as behind a load balancer). At the end the database holds each batch applied exactly
once: rows, stock, gap-free numbers, a verified audit chain."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from domain.db import Database
from tests.conftest import SECRET, bearer
from tests.conftest import test_settings as settings_for
from tests.reliability.processes import PrivateMariaDB, Server
from tests.reliability.support import SUMMARY, assert_applied_once, sales_batch, state
from tests.reliability.test_database_restart import give_truck_stock

FIRST_PORT = 18130
SERVERS = 3  # a killed server restarts (about 10 s on a busy 2-core machine) while the others serve
KILLS = int(os.environ.get("LPG_CRASH_KILLS", "20"))
PER_BATCH = int(os.environ.get("LPG_CRASH_BATCH", "60"))  # customers, each with a confirmed sale


class Fleet:
    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.ready = {id(s): s.alive for s in servers}
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def restart(self, server: Server) -> None:
        with self.lock:
            self.ready[id(server)] = False

        def run() -> None:
            try:
                server.start("--no-migrate", "--no-demo")
                with self.lock:
                    self.ready[id(server)] = True
            except BaseException as exc:  # noqa: BLE001
                self.errors.append(exc)

        threading.Thread(target=run, daemon=True).start()

    def pick(self, rnd: random.Random, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert not self.errors, self.errors
            with self.lock:
                up = [s for s in self.servers if self.ready[id(s)]]
            if up:
                return rnd.choice(up)
            time.sleep(0.1)
        raise AssertionError("no server came back")


@pytest.mark.mysql_only
def test_kill_9_during_large_pushes_loses_and_doubles_nothing(private_mariadb: PrivateMariaDB, tmp_path: Path) -> None:
    url = private_mariadb.create_database("lpg_crash")
    servers = [Server(url, FIRST_PORT + n, SECRET, tmp_path / f"server{n}.log") for n in range(SERVERS)]
    servers[0].start()  # migrates and loads the demo data
    for server in servers[1:]:
        server.start("--no-migrate", "--no-demo")
    fleet = Fleet(servers)
    check = Database(settings_for(url))
    rnd = random.Random(20)
    try:
        give_truck_stock(check)
        before = state(check)
        headers = bearer(check.settings, 2)
        pending = [{"device_id": f"tab-k{n % 3}", "changes": sales_batch(f"k{n}", PER_BATCH)} for n in range(KILLS + 5)]
        batches = len(pending)
        kills = lost = answered = attempts = 0
        statuses: dict[int, int] = {}
        durations: list[float] = []
        deadline = time.monotonic() + 900
        while pending or kills < KILLS:
            assert time.monotonic() < deadline, "the crash loop did not finish in time"
            if not pending:  # a kill may miss (the push ended first): more batches until enough kills landed
                pending.append({"device_id": f"tab-k{batches % 3}", "changes": sales_batch(f"k{batches}", PER_BATCH)})
                batches += 1
            server = fleet.pick(rnd)
            killer = None
            attempts += 1
            # Every other push runs to its end, so batches keep getting through and the typical push time is
            # known; the others are killed at a random moment within it.
            if kills < KILLS and attempts % 2 == 0:
                typical = sum(durations) / len(durations) if durations else 1.5
                killer = threading.Timer(rnd.uniform(0.02, 1.2 * typical), server.kill)
                killer.start()
            started = time.monotonic()
            try:
                response = httpx.post(server.url + "/api/v1/sync/push", json=pending[0], headers=headers, timeout=120)
            except httpx.HTTPError:
                response = None
            if killer is not None:
                killer.cancel()
                killer.join()
                if not server.alive:
                    kills += 1
                    fleet.restart(server)
            if response is None:
                lost += 1
                continue  # unanswered: the same batch is sent again
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                durations.append(time.monotonic() - started)
                results = {r["status"] for r in response.json()["results"]}
                assert results <= {"applied", "duplicate"}, results
                pending.pop(0)
                answered += 1
        line = (
            f"crash loop: {kills} kill -9 of {SERVERS} servers, {sum(s.starts for s in servers)} starts, "
            f"{batches} batches of {2 * PER_BATCH} changes, {lost} pushes unanswered and sent again, "
            f"answers {statuses}"
        )
        SUMMARY[line] += 1
        print(line)
        assert_applied_once(check, before, batches=batches, per_batch=PER_BATCH)
        assert kills >= KILLS, f"only {kills} kills"
    finally:
        for server in servers:
            server.stop()
        check.dispose()
