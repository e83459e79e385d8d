"""Read-your-writes across Galera nodes: a tablet pushes through the server on node 1 and pulls through the server
on node 2 with `since` = the `last_seq` it had; the pushed change is in that page.

Galera certifies a write set on every node before COMMIT returns, but applies it on the other nodes
asynchronously: a read on node 2 right after a commit on node 1 may not see it yet. The server runs every
connection to a Galera node with `wsrep_sync_wait=1` (`LPG_DB_SYNC_WAIT`), so node 2 first applies everything
the cluster committed before the read. To make the lag certain rather than a race, node 2's appliers are held
with FLUSH TABLES WITH READ LOCK while the push commits on node 1: a server on node 2 with the wait switched off
(`LPG_DB_SYNC_WAIT=0`) answers without the change, the normal one waits until the lock is released and answers
with it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from domain.db import Database
from domain.settings import Settings
from tests.conftest import bearer, user_id
from tests.reliability.galera_support import Tally, node_url, send, servers

pytestmark = [pytest.mark.galera, pytest.mark.mysql_only, pytest.mark.slow]


def last_seq(port: int, headers: dict[str, str], since: int = 0) -> tuple[int, set[tuple[str, int]]]:
    tally = Tally()
    seen: set[tuple[str, int]] = set()
    while True:
        page, _ = send(
            [port],
            0,
            "GET",
            f"/api/v1/sync/changes?since={since}&limit=1000",
            None,
            headers,
            tally,
            time.monotonic() + 120,
        )
        assert not tally.failures, tally.failures
        seen |= {(r["entity"], r["id"]) for r in page["results"]}
        since = page["last_seq"]
        if page["pending"] == 0:
            return since, seen


def push_customer(port: int, headers: dict[str, str], device: str, n: int) -> tuple[int, int]:
    tally = Tally()
    body = {
        "device_id": device,
        "changes": [
            {
                "client_temp_id": f"c-{n}",
                "op": "customer.create",
                "data": {"name": f"Read Your Writes {device} {n}", "address": f"{n} Causal Rd"},
            }
        ],
    }
    answer, _ = send([port], 0, "POST", "/api/v1/sync/push", body, headers, tally, time.monotonic() + 120)
    assert not tally.failures, tally.failures
    assert answer["results"][0]["status"] == "applied", answer["results"]
    return int(answer["id_map"][f"c-{n}"]["id"]), int(answer["last_seq"])


def node_connection(url: str) -> Any:
    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database, autocommit=True
    )


def test_a_pull_through_node_2_holds_what_was_pushed_through_node_1(demo: Database, settings: Settings) -> None:
    headers = bearer(settings, user_id(demo, "driver1"))
    with servers(node_url(1), node_url(2)) as (on_1, on_2):
        since, _ = last_seq(on_2.port, headers)
        for n in range(25):
            customer, pushed_seq = push_customer(on_1.port, headers, "ryw-tab", n)
            new_since, seen = last_seq(on_2.port, headers, since)
            assert ("customer", customer) in seen, f"push {n}: customer {customer} not in the pull through node 2"
            assert new_since >= pushed_seq
            since = new_since


def test_the_pull_waits_for_a_lagging_node_and_without_the_wait_it_would_miss_the_push(
    demo: Database, settings: Settings
) -> None:
    headers = bearer(settings, user_id(demo, "driver1"))
    with (
        servers(node_url(1), node_url(2)) as (on_1, on_2),
        servers(node_url(2), LPG_DB_SYNC_WAIT="0") as (on_2_no_wait,),
    ):
        since, _ = last_seq(on_2.port, headers)
        lock = node_connection(node_url(2))
        try:
            lock.cursor().execute("FLUSH TABLES WITH READ LOCK")  # node 2 stops applying write sets
            customer, _ = push_customer(on_1.port, headers, "ryw-lag", 0)

            _, stale = last_seq(on_2_no_wait.port, headers, since)
            assert ("customer", customer) not in stale, "node 2 applied the push although its appliers were held"

            release = threading.Timer(1.5, lambda: lock.cursor().execute("UNLOCK TABLES"))
            started = time.monotonic()
            release.start()
            _, seen = last_seq(on_2.port, headers, since)
            waited = time.monotonic() - started
            release.join()
        finally:
            lock.close()
        assert ("customer", customer) in seen, "the pull through node 2 missed the push through node 1"
        assert waited >= 1.0, f"the pull answered after {waited:.2f}s, before node 2 could have applied the push"
