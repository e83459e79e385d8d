"""Two server processes on two Galera nodes, tablets pushing and pulling through both, one node killed mid-run.

Tablets push a new customer and a confirmed sale of it per batch (every sale takes cylinders from the same
truck: the stock row, the feed and audit counters and the document number counters are hot rows that
certify across the nodes) and pull their own changes through the OTHER server after every push. An admin
reader follows the whole feed. A third of the way in, node 2's mariadbd is killed with SIGKILL; later it is
started again and rejoins (IST, or SST). Then:

- no answer other than 200 or 503 with Retry-After (and the client's retries succeed);
- the server on node 1 kept serving while node 2 was down, the server on node 2 serves again after it rejoined
  (without a restart of its own);
- every batch applied exactly once (no lost, no doubled customer or sale), sale and invoice numbers unique and
  gap-free;
- every tablet saw each of its pushes in its next pull through the other node (read-your-writes);
- the admin reader, pulling with the last `last_seq` it saw, holds every customer, sale and invoice at its
  current version (no feed gap);
- all three nodes hold the same data (CHECKSUM TABLE of every table).

`LPG_TEST_GALERA_SECONDS` (default 40) bounds the pushing time, `LPG_TEST_GALERA_TABLETS` (default 6) the tablets.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from domain.catalog.models import Customer
from domain.db import Database
from domain.invoicing.models import Invoice
from domain.sales.models import Transaction
from domain.settings import Settings
from tests.conftest import GALERA_URLS, bearer, user_id
from tests.reliability.galera_support import (
    Tally,
    failure_excerpt,
    galera,
    node_url,
    send,
    servers,
    table_checksums,
    wait_for_same_position,
)
from tests.support.sync_support import recent

pytestmark = [pytest.mark.galera, pytest.mark.mysql_only, pytest.mark.slow]

SECONDS = float(os.environ.get("LPG_TEST_GALERA_SECONDS", "40"))
TABLETS = int(os.environ.get("LPG_TEST_GALERA_TABLETS", "6"))
PUSH = "/api/v1/sync/push"


def stock_up(db: Database) -> int:
    """Test setup only: enough full cylinders on the first truck for every sale of the run (direct SQL).

    Its id is looked up, never assumed: a cluster with wsrep_auto_increment_control numbers rows per node."""
    with db.engine.begin() as conn:
        truck = int(conn.execute(text("SELECT MIN(id) FROM trucks")).scalar_one())
        conn.execute(text("UPDATE truck_stock SET full = 10000000 WHERE truck_id = :t"), {"t": truck})
    return truck


def pull_to_end(
    ports: list[int], first: int, since: int, headers: dict[str, str], tally: Tally, deadline: float
) -> tuple[int, list[dict[str, Any]]]:
    """Pages from `since` until `pending` is 0: the new last_seq and every result seen."""
    results: list[dict[str, Any]] = []
    while True:
        page, _ = send(
            ports, first, "GET", f"/api/v1/sync/changes?since={since}&limit=1000", None, headers, tally, deadline
        )
        results.extend(page["results"])
        assert page["last_seq"] >= since
        since = page["last_seq"]
        if page["pending"] == 0:
            return since, results


def numbers_are_gap_free(numbers: list[str]) -> None:
    sequence = sorted(int(re.fullmatch(r"[A-Z]+-\d{4}-(\d+)", n).group(1)) for n in numbers)  # type: ignore[union-attr]
    assert sequence == list(range(1, len(sequence) + 1)), "numbers with a gap or a double"


def test_two_servers_two_nodes_one_node_killed_and_rejoined(demo: Database, settings: Settings) -> None:
    truck = stock_up(demo)
    admin = bearer(settings, user_id(demo, "admin"))
    drivers = [bearer(settings, user_id(demo, "driver1")), bearer(settings, user_id(demo, "driver2"))]
    tally = Tally()
    stop = threading.Event()
    tablets_done = threading.Event()  # the reader's last pull starts after every tablet's last push
    pushed: dict[str, int] = {}
    served: list[tuple[float, int]] = []  # (when, server index) of every 200 to a push
    reader_seen: dict[tuple[str, int], int] = {}
    events: dict[str, float] = {}
    errors: list[BaseException] = []

    with servers(node_url(1), node_url(2)) as (server_a, server_b):
        ports = [server_a.port, server_b.port]
        started = time.monotonic()
        deadline = started + SECONDS + 300

        def tablet(number: int) -> None:
            device = f"galera-tab-{number}"
            headers = drivers[number % 2]
            home = number % 2
            since, _ = pull_to_end(ports, home + 1, 0, headers, tally, deadline)
            batch = 0
            try:
                while not stop.is_set():
                    changes = [
                        {
                            "client_temp_id": f"c-{batch}",
                            "op": "customer.create",
                            "data": {"name": f"Galera {device} {batch}", "address": f"{batch} Cluster Rd"},
                        },
                        {
                            "client_temp_id": f"s-{batch}",
                            "op": "transaction.create",
                            "data": {
                                "customer": f"c-{batch}",
                                "truck": truck,
                                "confirm": True,
                                "occurred_at": recent(),
                                "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
                                "services": [{"code": "DELIVERY", "qty": 1}],
                            },
                        },
                    ]
                    body = {"device_id": device, "changes": changes}
                    answer, index = send(ports, home, "POST", PUSH, body, headers, tally, deadline)
                    served.append((time.monotonic(), index))
                    statuses = [r["status"] for r in answer["results"]]
                    assert set(statuses) <= {"applied", "duplicate"}, answer["results"]
                    customer_id = answer["id_map"][f"c-{batch}"]["id"]
                    sale_id = answer["id_map"][f"s-{batch}"]["id"]
                    batch += 1
                    pushed[device] = batch
                    # Read-your-writes: the next pull, through the other server, holds both.
                    since, results = pull_to_end(ports, home + 1, since, headers, tally, deadline)
                    seen = {(r["entity"], r["id"]) for r in results}
                    assert ("customer", customer_id) in seen, f"{device}: customer {customer_id} not in its pull"
                    assert ("transaction", sale_id) in seen, f"{device}: sale {sale_id} not in its pull"
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()

        def reader() -> None:
            since = 0
            try:
                while True:
                    finished = tablets_done.is_set()
                    since, results = pull_to_end(ports, 1, since, admin, tally, deadline)
                    for r in results:
                        reader_seen[(r["entity"], r["id"])] = r["version"]
                    if finished:
                        return
                    time.sleep(0.3)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()

        def chaos() -> None:
            try:
                time.sleep(SECONDS * 0.3)
                galera("kill", "2")
                events["killed"] = time.monotonic()
                time.sleep(SECONDS * 0.25)
                events["restarting"] = time.monotonic()
                galera("start-node", "2")
                events["rejoined"] = time.monotonic()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=tablet, args=(n,)) for n in range(TABLETS)]
        follower = threading.Thread(target=reader)
        killer = threading.Thread(target=chaos)
        for thread in [*threads, follower, killer]:
            thread.start()
        # Push for SECONDS, and at least 8 s more once node 2 is back (its server must serve again).
        while not stop.is_set():
            rejoined = events.get("rejoined")
            if time.monotonic() - started >= SECONDS and rejoined and time.monotonic() - rejoined >= 8:
                break
            if time.monotonic() > deadline:
                errors.append(AssertionError("the run did not end in time"))
                break
            time.sleep(0.2)
        stop.set()
        killer.join(300)
        for thread in threads:
            thread.join(300)
        tablets_done.set()
        follower.join(300)
        logs = server_a.output() + server_b.output()

    assert not errors, f"{errors[0]!r}\n{failure_excerpt(logs)}"
    assert not tally.failures, tally.failures[:5]
    killed, rejoined = events["killed"], events["rejoined"]
    during = [index for when, index in served if killed + 1 < when < events["restarting"]]
    after = [index for when, index in served if when > rejoined]
    assert during.count(0) > 0, "the server on node 1 served no push while node 2 was down"
    assert after.count(1) > 0, "the server on node 2 served no push after node 2 rejoined"

    batches = sum(pushed.values())
    with demo.engine.connect() as conn:
        for device, count in pushed.items():
            names = conn.execute(select(Customer.name).where(Customer.name.like(f"Galera {device} %"))).scalars().all()
            assert sorted(names) == sorted(f"Galera {device} {n}" for n in range(count)), device
        sales = conn.execute(select(Transaction.number)).scalars().all()
        invoices = conn.execute(select(Invoice.number)).scalars().all()
        assert len(sales) == batches and len(invoices) == batches
        numbers_are_gap_free([n for n in sales if n])
        numbers_are_gap_free(list(invoices))
        # No feed gap: the reader holds every record at its current version.
        for entity, model in (("customer", Customer), ("transaction", Transaction), ("invoice", Invoice)):
            rows = conn.execute(select(model.id, model.version)).all()
            missing = [(i, v) for i, v in rows if reader_seen.get((entity, i)) != v]
            assert not missing, f"{entity}: {len(missing)} records not pulled at their version, e.g. {missing[:3]}"
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()

    wait_for_same_position(GALERA_URLS)
    sums = [table_checksums(url) for url in GALERA_URLS]
    assert sums[0] == sums[1] == sums[2], "the nodes hold different data"

    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "tablets": TABLETS,
        "batches": batches,
        "customers": customers,
        "requests": tally.requests,
        "ok": tally.ok,
        "503_retried": tally.unavailable,
        "node2_down_s": round(events["restarting"] - killed, 1),
        "node2_rejoin_s": round(rejoined - events["restarting"], 1),
        "pushes_served_by_node1_while_node2_down": during.count(0),
        "pushes_served_by_node2_after_rejoin": after.count(1),
    }
    print("galera run:", json.dumps(figures))
