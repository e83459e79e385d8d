"""What the hot rows cost on Galera: push throughput with one server on one node vs two servers on two nodes.

    .ci/galera start
    python tests/bench/galera.py [--seconds 20] [--clients 4] [--batch 10] [--plain-url mysql+pymysql://.../DB]

Every push carries `--batch` new customers and a confirmed sale of each (one truck, so the truck's stock row,
the feed and audit counters and the sale and invoice number counters are written by every push). On one
node those rows are taken in turn under row locks; across two nodes, two pushes that wrote the same row
commit on one node and fail certification on the other (1213 at COMMIT), which runs its unit again.
`--plain-url` adds the same run on a stand-alone MariaDB for comparison (its database is emptied and migrated;
on the cluster the bench uses its own database `lpg_bench_galera`). The clients honour 503 + Retry-After
(capped at 0.5 s) and send the same batch again; the table counts them.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from domain.db import Database  # noqa: E402
from domain.demo import load_demo  # noqa: E402
from domain.schema import upgrade  # noqa: E402
from tests.conftest import bearer, reset_mysql_schema, test_settings, user_id  # noqa: E402
from tests.reliability.galera_support import Tally, send, servers  # noqa: E402
from tests.support.sync_support import recent  # noqa: E402

DATABASE = "lpg_bench_galera"

NODES = [f"mysql+pymysql://root@127.0.0.1:{port}/{DATABASE}" for port in (3351, 3352)]


def fresh(url: str) -> str:
    """The database at `url` emptied, migrated, with the demo data and a well-stocked first truck; its URL."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database=""))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` CHARACTER SET utf8mb4")
    admin.dispose()
    engine = create_engine(url)
    reset_mysql_schema(engine)
    upgrade(engine)
    engine.dispose()
    db = Database(test_settings(url))
    load_demo(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE truck_stock SET full = 10000000 WHERE truck_id = (SELECT MIN(id) FROM trucks)"))
    db.dispose()
    return url


def retries_in(log: str) -> int:
    return log.count("retrying:")


def run(name: str, urls: list[str], seconds: float, clients: int, batch: int, env: dict[str, str]) -> dict[str, object]:
    settings = test_settings(urls[0])
    db = Database(settings)
    headers = bearer(settings, user_id(db, "driver1"))
    truck = db.read(lambda s: int(s.execute(text("SELECT MIN(id) FROM trucks")).scalar_one()))
    db.dispose()
    tally = Tally()
    applied = [0] * clients
    stop = threading.Event()
    with servers(*urls, **env) as started:
        ports = [server.port for server in started]

        def client(number: int) -> None:
            n = 0
            device = f"bench-{name}-{number}"
            while not stop.is_set():
                changes: list[dict[str, object]] = []
                for i in range(batch):
                    key = f"{n}-{i}"
                    changes.append(
                        {
                            "client_temp_id": f"c-{key}",
                            "op": "customer.create",
                            "data": {"name": f"Bench {device} {key}", "address": f"{key} Bench Rd"},
                        }
                    )
                    changes.append(
                        {
                            "client_temp_id": f"s-{key}",
                            "op": "transaction.create",
                            "data": {
                                "customer": f"c-{key}",
                                "truck": truck,
                                "confirm": True,
                                "occurred_at": recent(),
                                "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
                            },
                        }
                    )
                answer, _ = send(
                    ports,
                    number % len(ports),
                    "POST",
                    "/api/v1/sync/push",
                    {"device_id": device, "changes": changes},
                    headers,
                    tally,
                    time.monotonic() + 300,
                )
                applied[number] += sum(r["status"] == "applied" for r in answer["results"])
                n += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(300)
        elapsed = time.perf_counter() - began
        retries = sum(retries_in(server.output()) for server in started)
    return {
        "setup": name,
        "servers": len(urls),
        "changes": sum(applied),
        "changes_s": sum(applied) / elapsed,
        "pushes": tally.ok,
        "503": tally.unavailable,
        "unit_retries": retries,
        "failures": len(tally.failures),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=10, help="customers (and as many sales) per push")
    parser.add_argument("--plain-url", default="", help="a stand-alone MariaDB database URL (emptied)")
    parser.add_argument("--sync-wait", default="", help="LPG_DB_SYNC_WAIT for the servers (default: auto, 1 on Galera)")
    args = parser.parse_args()
    env = {"LPG_DB_SYNC_WAIT": args.sync_wait} if args.sync_wait else {}
    rows = []
    setups: list[tuple[str, list[str]]] = []
    if args.plain_url:
        setups.append(("plain MariaDB, 1 server", [args.plain_url]))
    setups += [("Galera, 1 server on node 1", NODES[:1]), ("Galera, 2 servers on nodes 1+2", NODES)]
    for name, urls in setups:
        fresh(urls[0])
        row = run(name, urls, args.seconds, args.clients, args.batch, env)
        rows.append(row)
        print(f"  {name}: {row}", flush=True)
    print()
    print(
        f"{args.clients} clients, pushes of {args.batch} customers + {args.batch} confirmed sales, {args.seconds:.0f} s"
    )
    print("| setup | servers | changes applied | changes/s | pushes | 503 retried | unit retries | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['servers']} | {r['changes']} | {r['changes_s']:,.0f} | {r['pushes']} | {r['503']} "
            f"| {r['unit_retries']} | {r['failures']} |"
        )


if __name__ == "__main__":
    main()
