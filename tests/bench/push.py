"""Push throughput over HTTP against uvicorn, side by side with pouchdb-server's `_bulk_docs`.

    python tests/bench/push.py [--batches 20] [--engines sqlite,mysql] [--mysql-url URL] [--no-peer]

Changes/s for `customer.create` and for confirmed `transaction.create` (one delivery and one service),
batches of 500, on SQLite and MariaDB, JSON and MessagePack; every change must come back `applied`.
The peer is pouchdb-server 4.2.0 (npm) on leveldb, fed 500-document batches of ~316 B documents.
Everything runs on 127.0.0.1 in this one run, so the figures are comparable; the machine is shared and
noisy, so compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from domain.accounts.tokens import ACCESS, encode_token  # noqa: E402
from domain.settings import Settings  # noqa: E402
from tests.bench.peer import pouchdb_server  # noqa: E402

SECRET = "bench-secret-" + "k" * 40
BATCH = 500


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def lpg_server(database_url: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "LPG_SECRET_KEY": SECRET, "LPG_DATABASE_URL": database_url}
    workdir = Path(tempfile.mkdtemp(prefix="lpg-bench-"))
    # The server's log goes to a file: a pipe nobody reads would block the server once it filled up.
    with open(workdir / "server.log", "wb") as logfile:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logfile,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start: " + (workdir / "server.log").read_text()[-3000:])
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def stock_up(database_url: str) -> None:
    """Bench only: enough full cylinders on truck 1 for every sale (direct SQL, no audit)."""
    from sqlalchemy import create_engine, update

    from domain.logistics.models import TruckStock

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(TruckStock).where(TruckStock.truck_id == 1).values(full=10_000_000))
    engine.dispose()


def post(conn: http.client.HTTPConnection, headers: dict[str, str], body: dict[str, Any], fmt: str) -> dict[str, Any]:
    raw = orjson.dumps(body) if fmt == "json" else msgpack.packb(body)
    kind = "application/json" if fmt == "json" else "application/msgpack"
    conn.request("POST", "/api/v1/sync/push", body=raw, headers={**headers, "Content-Type": kind, "Accept": kind})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"push failed: {response.status} {data[:300]!r}")
    return orjson.loads(data) if fmt == "json" else msgpack.unpackb(data)  # type: ignore[no-any-return]


def customer_changes(prefix: str, start: int) -> list[dict[str, Any]]:
    return [
        {
            "client_temp_id": f"{prefix}-{start + i}",
            "op": "customer.create",
            "data": {
                "name": f"Bench Eating House {start + i}",
                "address": f"{start + i} Jurong Port Rd",
                "email": f"bench{start + i}@example.sg",
            },
        }
        for i in range(BATCH)
    ]


def sale_changes(prefix: str, start: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        {
            "client_temp_id": f"{prefix}-{start + i}",
            "op": "transaction.create",
            "data": {
                "customer": 1 + (start + i) % 5,
                "truck": 1,
                "confirm": True,
                "occurred_at": now,
                "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
                "services": [{"code": "DELIVERY", "qty": 1}],
            },
        }
        for i in range(BATCH)
    ]


def measure(port: int, fmt: str, op: str, batches: int, device: str) -> float:
    settings = Settings.from_env({"LPG_SECRET_KEY": SECRET})
    token, _ = encode_token(settings, 2, ACCESS)  # driver1 of the demo data
    headers = {"Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    make = customer_changes if op == "customer.create" else sale_changes
    post(conn, headers, {"device_id": device, "changes": make(device + "-warm", 0)[:50]}, fmt)  # warm-up
    started = time.perf_counter()
    for n in range(batches):
        response = post(conn, headers, {"device_id": device, "changes": make(device, n * BATCH)}, fmt)
        statuses = {r["status"] for r in response["results"]}
        if statuses != {"applied"}:
            raise RuntimeError(f"not all applied: {[r for r in response['results'] if r['status'] != 'applied'][:2]}")
    return batches * BATCH / (time.perf_counter() - started)


def run_engine(name: str, url: str, batches: int) -> list[tuple[str, str, str, float]]:
    rows = []
    with lpg_server(url) as port:
        stock_up(url)
        for fmt in ("json", "msgpack"):
            for op in ("customer.create", "transaction.create"):
                rate = measure(port, fmt, op, batches, f"bench-{name}-{fmt}-{op.split('.')[0]}")
                rows.append((name, fmt, op, rate))
                print(f"  {name:7} {fmt:8} {op:20} {rate:10,.0f} changes/s", flush=True)
    return rows


def fresh_mysql(url: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    target = make_url(url).set(database="lpg_bench_push")
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS lpg_bench_push")
        conn.exec_driver_sql("CREATE DATABASE lpg_bench_push CHARACTER SET utf8mb4")
    admin.dispose()
    return target.render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--engines", default="sqlite,mysql")
    parser.add_argument(
        "--mysql-url", default=os.environ.get("LPG_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
    )
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, float]] = []
    peer_rate = None
    if not args.no_peer:
        with pouchdb_server() as peer:
            peer_rate = peer.bulk_docs_rate(batches=max(args.batches, 20), batch=BATCH)
            print(f"  pouchdb-server _bulk_docs {peer_rate:10,.0f} docs/s", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="lpg-bench-db-"))
    try:
        for engine in args.engines.split(","):
            url = f"sqlite:///{workdir}/bench.db" if engine == "sqlite" else fresh_mysql(args.mysql_url)
            rows.extend(run_engine(engine, url, args.batches))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"| engine | encoding | op | changes/s | vs pouchdb-server _bulk_docs ({peer_rate or 0:,.0f} docs/s) |")
    print("|---|---|---|---:|---:|")
    for engine, fmt, op, rate in rows:
        ratio = f"{rate / peer_rate:.2f}x" if peer_rate else "n/a"
        print(f"| {engine} | {fmt} | {op} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
