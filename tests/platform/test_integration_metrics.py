"""Metrics: /metrics in the Prometheus text format for an admin, counters that move with a push, route
templates as labels, values read from the database at scrape time, the token-free local address, and
several workers counted together (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from domain.accounts.models import Device
from domain.db import Database
from domain.feed.services import current_seq
from domain.settings import Settings
from tests.conftest import ENGINE, SECRET
from tests.support.outbox_support import queue
from tests.support.sales_support import full, sale_payload
from tests.support.sync_support import push, recent

ROOT = Path(__file__).resolve().parents[2]
PROM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_: dict[Any, float], name: str, **labels: str) -> float:
    return all_.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: TestClient, headers: dict[str, str]) -> dict[Any, float]:
    response = client.get("/metrics", headers={**headers, "Accept": PROM_ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_metrics_need_an_admin(client: TestClient, driver_headers: dict[str, str]) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=driver_headers).status_code == 403


def test_a_push_moves_the_counters_and_the_database_values_are_current(
    client: TestClient, admin_headers: dict[str, str], driver_headers: dict[str, str], demo: Database
) -> None:
    before = scrape(client, admin_headers)
    good = {"op": "transaction.create", "data": {**sale_payload(deliveries=[full("CYL9", 1)]), "occurred_at": recent()}}
    bad = {"op": "transaction.cancel", "data": {"id": 999999}}
    changes = [{**good, "client_temp_id": "m-1"}, {**good, "client_temp_id": "m-2"}, {**bad, "client_temp_id": "m-3"}]
    answer = push(client, driver_headers, changes)
    trx = client.get("/api/v1/transactions/", headers=driver_headers).json()["results"][0]["id"]
    assert client.get(f"/api/v1/transactions/{trx}/", headers=driver_headers).status_code == 200
    demo.run(lambda uow: uow.session.add(Device(device_id="tab-m", user_id=2, last_pulled_seq=3)))
    queue(demo, demo.settings, answer["results"][0]["related"]["invoice"]["id"])  # an e-mail waiting
    after = scrape(client, admin_headers)

    moved = {
        ("lpg_push_changes_total", (("code", ""), ("status", "applied"))): 2,
        ("lpg_push_changes_total", (("code", "not_found"), ("status", "rejected"))): 1,
        ("lpg_push_batch_size_count", ()): 1,
        ("lpg_push_batch_size_sum", ()): 3,
    }
    for key, delta in moved.items():
        assert after.get(key, 0) - before.get(key, 0) == delta, key
    push_route = {"method": "POST", "route": "/api/v1/sync/push", "status": "2xx"}
    assert (
        value(after, "lpg_http_request_duration_seconds_count", **push_route)
        - value(before, "lpg_http_request_duration_seconds_count", **push_route)
        == 1
    )
    one = {"method": "GET", "route": "/api/v1/transactions/{id:int}/", "status": "2xx"}
    assert value(after, "lpg_http_request_duration_seconds_count", **one) >= 1  # the template, not /…/7/
    assert not any("transactions/%d" % trx in str(key) for key in after)
    head = demo.read(current_seq)
    assert value(after, "lpg_feed_head_seq") == head > 0
    assert value(after, "lpg_device_lag", device="tab-m") == head - 3
    assert value(after, "lpg_outbox_emails", status="pending") == 1
    assert value(after, "lpg_outbox_oldest_pending_age_seconds") >= 0
    assert value(after, "lpg_database_up") == 1
    assert "lpg_db_pool_connections_in_use" in {name for name, _ in after}


def test_a_retried_unit_is_counted_by_its_error(
    client: TestClient, admin_headers: dict[str, str], demo: Database
) -> None:
    before = scrape(client, admin_headers)
    if ENGINE == "mysql":
        import pymysql

        orig: Exception = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        label = "1213"
    else:
        import sqlite3

        orig = sqlite3.OperationalError("database is locked")
        label = "OperationalError"
    calls: list[int] = []

    def work(uow: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE ...", {}, orig)
        return len(calls)

    assert demo.run(work) == 2  # the real retry loop of Database.run
    after = scrape(client, admin_headers)
    key = ("lpg_db_unit_retries_total", (("error", label),))
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_the_local_metrics_address_needs_no_token(demo: Database, settings: Settings) -> None:
    from sync.metrics import serve

    server = serve("127.0.0.1:18650", demo)
    try:
        response = httpx.get("http://127.0.0.1:18650/metrics", timeout=10)
        assert response.status_code == 200
        assert value(samples(response.text), "lpg_feed_head_seq") == demo.read(current_seq)
        assert httpx.get("http://127.0.0.1:18650/other", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_two_workers_are_counted_together(demo: Database, settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "prom").mkdir()  # given, it must exist (server.py makes a temporary one when not given)
    env = dict(
        os.environ,
        LPG_DATABASE_URL=settings.database_url,
        LPG_SECRET_KEY=SECRET,
        LPG_ENV="test",
        LPG_METRICS_ADDR="127.0.0.1:18651",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
    )
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "server.py", "--no-migrate", "--no-demo", "--port", "18652", "--workers", "2"],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine imports slowly
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get("http://127.0.0.1:18652/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for _ in range(40):  # new connections: both workers answer some
            with httpx.Client() as fresh:
                assert fresh.get("http://127.0.0.1:18652/api/v1/health", timeout=10).status_code == 200
        text = httpx.get("http://127.0.0.1:18651/metrics", timeout=10).text
        health = {"method": "GET", "route": "/api/v1/health", "status": "2xx"}
        assert value(samples(text), "lpg_http_request_duration_seconds_count", **health) >= 41
        pids = {name.rpartition("_")[2] for name in os.listdir(tmp_path / "prom")}
        assert len(pids) >= 2, pids  # two workers wrote their counts
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
