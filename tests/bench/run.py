"""The benchmark command: lpg-sync and pouchdb-server side by side in one run, with the raw floor.

    python tests/bench/run.py [--quick] [--mysql-url URL] [--out docs/benchmarks.md] [--only NAMES]

Run by hand, never in CI. Everything runs on 127.0.0.1 in this one run, so ratios are comparable on a
shared, noisy machine; absolute figures are not. What is measured (the targets are the project's):

- fleet: 50 devices at once, each pushing 1-change batches (`customer.create`, then a confirmed sale) to
  `server.py --workers 2` on MariaDB, against pouchdb-server's single-doc `POST /db` with 50 clients. Sales
  run twice: each device selling from its own truck to its own customer (a fleet: the target's row), and
  all 50 from one truck to 5 customers (every sale waits for the same stock rows; shown, no target).
- sequential: one device pushing 1-change batches one after another (p50 of three interleaved rounds,
  pooled), against one client's single-doc POSTs.
- every fleet, sequential, batch and pull measure starts on a machine at rest (`settle`: MariaDB's purge of
  what the previous load left behind done, the CPUs mostly idle).
- batches: 500 `customer.create` a push on SQLite and MariaDB, and 500 confirmed sales on MariaDB, one
  worker, against `_bulk_docs` of 500 docs.
- pull: the feed those pushes wrote, paged as an admin (JSON limit 1000, msgpack limit 10000), against
  `_changes?include_docs=true&limit=1000` of the documents `_bulk_docs` wrote. The client decodes every
  page, each format with its fastest decoder (orjson for JSON, the peer's pages included; ormsgpack for
  msgpack).
- floor: the same rows as a 1-change customer push and as a 1-change confirmed sale (tests/bench/floor_sale.py)
  written by raw PyMySQL with the fewest round trips (50 threads, and one), 500-customer batches by raw
  PyMySQL / sqlite3 `executemany`, and the writes of 500-sale batches recorded from our reconciler and
  replayed by the bare driver (tests/bench/replay_floor.py).

Extra sections: any other module `tests/bench/<name>.py` that defines `bench_rows(args) -> list[dict]` is
imported and called after the built-in sections (`args` is this command's argparse namespace: `quick`,
`mysql_url`, `port_base`, ...). Each dict is one table row with the string keys `measure`, `ours`,
`peer`, `floor`, `ratio`, `target` (missing keys print empty); a module may also set `SECTION = "title"`.
`--only fleet,batches,pull,floor,<module>` limits the run.

The result goes to stdout and, dated and with the machine's description, to the top of
docs/benchmarks.md (older runs stay below it). That file is written only by this command.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import ormsgpack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.floor_sale import OUR_SALE_TRIPS, floor_sale_push, floor_sale_setup  # noqa: E402
from tests.bench.peer import Peer, decode, pouchdb_server  # noqa: E402
from tests.bench.replay_floor import replay_floor_rate  # noqa: E402

SECRET = "bench-secret-" + "k" * 40
BATCH = 500
CLIENTS = 50
BUILTIN = ("fleet", "batches", "pull", "floor")
NOT_SECTIONS = {"run", "push", "pull", "peer", "pouch_replicate", "replay_floor", "floor_sale", "__init__"}
MARK = "<!-- runs: newest first; written by tests/bench/run.py -->"


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- load generation ----------------------------------------------------------------------------------------


@dataclass
class Load:
    """Requests answered in a run, their latencies (s) and the wall time."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    def summary(self) -> str:
        return f"{self.rate:,.0f}/s, p50 {self.pct(0.5):.1f} ms, p99 {self.pct(0.99):.0f} ms"


# One request on a keep-alive connection: (connection, client number, request number) -> error text or None.
Request = Callable[[http.client.HTTPConnection, int, int], "str | None"]


def hammer(port: int, request: Request, clients: int, seconds: float) -> Load:
    """`clients` threads, each with its own keep-alive connection, sending `request` until time is up.

    A request that raises is recorded as an error (the connection is opened again); any error fails the run."""
    load = Load()
    lock = threading.Lock()
    stop_at = [0.0, 0.0]  # start, stop: set when the last client is warm, before any is released

    def go() -> None:
        stop_at[0] = time.perf_counter()
        stop_at[1] = stop_at[0] + seconds

    start = threading.Barrier(clients + 1, action=go, timeout=300)

    def once(conn: http.client.HTTPConnection, n: int, i: int) -> tuple[http.client.HTTPConnection, str | None]:
        for attempt in (1, 2):
            try:
                return conn, request(conn, n, i)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
                # The server closed an idle keep-alive connection: open another and send again (both
                # servers' requests here are safe to resend: pushes are idempotent, POSTs make new docs).
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                if attempt == 2:
                    return conn, f"{exc.__class__.__name__}: {exc}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                conn.close()
                return http.client.HTTPConnection("127.0.0.1", port, timeout=120), f"{exc.__class__.__name__}: {exc}"
        raise AssertionError("unreachable")

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn, error = once(conn, n, 0)  # warm-up: connection, device row
        mine: list[float] = []
        errors = [error] if error else []
        start.wait()
        i = 1
        while time.perf_counter() < stop_at[1]:
            t0 = time.perf_counter()
            conn, error = once(conn, n, i)
            mine.append(time.perf_counter() - t0)
            if error:
                errors.append(error)
            i += 1
        with lock:
            load.latencies.extend(mine)
            load.errors.extend(errors)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    load.elapsed = time.perf_counter() - stop_at[0]
    return load


def hammer_one(port: int, request: Request, count: int) -> Load:
    load = Load()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    error = request(conn, 0, 0)
    if error:
        load.errors.append(error)
    t_start = time.perf_counter()
    for i in range(1, count + 1):
        t0 = time.perf_counter()
        error = request(conn, 0, i)
        load.latencies.append(time.perf_counter() - t0)
        if error:
            load.errors.append(error)
    load.elapsed = time.perf_counter() - t_start
    conn.close()
    return load


# -- lpg-sync -----------------------------------------------------------------------------------------------


@contextmanager
def lpg_server(database_url: str, port: int, workers: int = 1) -> Iterator[int]:
    logfile = Path(tempfile.mkdtemp(prefix="lpg-bench-")) / "server.log"
    env = {
        **os.environ,
        "LPG_SECRET_KEY": SECRET,
        "LPG_DATABASE_URL": database_url,
        "LPG_DB_POOL_SIZE": "30",
        "LPG_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(logfile.read_text()[-3000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start: " + logfile.read_text()[-3000:])
        time.sleep(1.0 if workers > 1 else 0.1)  # let every worker come up
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def token(user_id: int) -> str:
    from domain.accounts.tokens import ACCESS, encode_token
    from domain.settings import Settings

    value, _ = encode_token(Settings.from_env({"LPG_SECRET_KEY": SECRET}), user_id, ACCESS)
    return value


def stock_up(database_url: str) -> None:
    """Bench only: enough full cylinders on truck 1 for every sale (direct SQL, no audit)."""
    from sqlalchemy import create_engine, update

    from domain.logistics.models import TruckStock

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(TruckStock).where(TruckStock.truck_id == 1).values(full=10_000_000))
    engine.dispose()


def fleet_setup(database_url: str, tag: str = "BENCH") -> list[tuple[int, int]]:
    """Bench only: a truck and a customer of its own for each of the 50 devices, as in a real fleet (one
    driver, one truck, one round of customers), stocked for every sale (direct rows, no feed or audit)."""
    from decimal import Decimal

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import domain.models  # noqa: F401 - every table, for the foreign keys
    from domain.catalog.models import Customer, EquipmentModel, Truck
    from domain.logistics.models import TruckStock

    engine = create_engine(database_url)
    pairs = []
    with Session(engine) as session, session.begin():
        cylinder = session.query(EquipmentModel).filter_by(code="CYL12.7").one()
        for n in range(CLIENTS):
            truck = Truck(plate=f"{tag}{n:03d}", name=f"Bench lorry {n}")
            customer = Customer(name=f"Bench Kopitiam {n}", address=f"{n} Bench Rd", meter_rate=Decimal("0"))
            session.add_all([truck, customer])
            session.flush()
            session.add(TruckStock(truck_id=truck.id, equipment_id=cylinder.id, full=10_000_000, empty=0))
            pairs.append((truck.id, customer.id))
    engine.dispose()
    return pairs


def spread_sale(pairs: list[tuple[int, int]]) -> Callable[[str, int], dict[str, Any]]:
    """A confirmed sale from the device's own truck to its own customer (the device is `<tag>-<client>`)."""

    def make(tag: str, n: int) -> dict[str, Any]:
        truck, customer_id = pairs[int(tag.rpartition("-")[2]) % len(pairs)]
        change = sale(tag, n)
        change["data"].update(truck=truck, customer=customer_id)
        return change

    return make


def settle(url: str, limit: float = 90.0) -> None:
    """Wait until MariaDB has caught up with the load before (InnoDB's purge of the old row versions a
    fleet's commits left, its history list, back under 1,000), so that one device's latency is measured
    on a database at rest, not in the wake of the previous section; logs how long that took."""
    import re

    from sqlalchemy import create_engine

    engine = create_engine(url)
    t0 = time.monotonic()
    length = -1
    try:
        with engine.connect() as conn:
            while time.monotonic() - t0 < limit:
                status = conn.exec_driver_sql("SHOW ENGINE INNODB STATUS").one()[2]
                found = re.search(r"History list length (\d+)", status)
                length = int(found.group(1)) if found else 0
                if length < 1000:
                    break
                time.sleep(0.5)
    finally:
        engine.dispose()
    busy = quiet_cpu(limit=30.0)
    log(f"  database settled in {time.monotonic() - t0:.1f} s (history list length {length}, CPU {busy:.0%} busy)")


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def quiet_cpu(limit: float, busy_max: float = 0.25) -> float:
    """Wait (up to `limit` seconds) for a half-second in which the machine's CPUs are mostly idle (the
    previous section's server gone, the database's background work done); returns the last busy share."""
    deadline = time.monotonic() + limit
    busy = 1.0
    while time.monotonic() < deadline:
        total0, idle0 = _cpu_times()
        time.sleep(0.5)
        total1, idle1 = _cpu_times()
        busy = 1 - (idle1 - idle0) / max(1, total1 - total0)
        if busy <= busy_max:
            break
    return busy


def fresh_mysql(url: str, name: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def customer(tag: str, n: int) -> dict[str, Any]:
    return {
        "client_temp_id": f"{tag}-{n}",
        "op": "customer.create",
        "data": {"name": f"Bench Eating House {n}", "address": f"{n} Jurong Port Rd", "email": f"b{n}@example.sg"},
    }


def sale(tag: str, n: int) -> dict[str, Any]:
    return {
        "client_temp_id": f"{tag}-{n}",
        "op": "transaction.create",
        "data": {
            "customer": 1 + n % 5,
            "truck": 1,
            "confirm": True,
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
            "services": [{"code": "DELIVERY", "qty": 1}],
        },
    }


def push_request(tag: str, make: Callable[[str, int], dict[str, Any]], size: int = 1) -> Request:
    headers = {"Authorization": f"Bearer {token(2)}", "Content-Type": "application/json"}  # driver1

    def request(conn: http.client.HTTPConnection, client: int, i: int) -> str | None:
        device = f"{tag}-{client}"
        changes = [make(device, i * size + k) for k in range(size)]
        conn.request("POST", "/api/v1/sync/push", orjson.dumps({"device_id": device, "changes": changes}), headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return f"{response.status} {body[:200]!r}"
        results = orjson.loads(body)["results"]
        bad = [r for r in results if r["status"] != "applied"]
        return f"not applied: {bad[0]}" if bad else None

    return request


def peer_post(conn: http.client.HTTPConnection, client: int, i: int) -> str | None:
    doc = Peer.doc(client * 10_000_000 + i)
    conn.request("POST", "/fleet", orjson.dumps(doc), {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    return None if response.status == 201 else f"{response.status} {body[:200]!r}"


# -- the raw floor ------------------------------------------------------------------------------------------


def floor_customer_push(url: str) -> Callable[[Any, int, int], None]:
    """The rows of a 1-change `customer.create` push, lean: 8 statements and COMMIT.

    Authentication in one SELECT, the device row updated in one statement, one idempotency query, the
    customer, its idempotency record, then the feed and audit counters locked late in one sorted statement,
    the feed entry, the audit entry and the counters written, COMMIT."""

    def push(conn: Any, client: int, i: int) -> None:
        device, tag = f"floor-{client}", f"floor-{client}-{i}"
        now = datetime.now(UTC).replace(tzinfo=None)
        cur = conn.cursor()
        cur.execute("SELECT id, role, active FROM users WHERE id = %s", (2,))
        cur.fetchall()
        cur.execute(
            "UPDATE devices SET last_push_at = %s, applied_count = applied_count + 1, version = version + 1,"
            " last_modified = %s WHERE device_id = %s AND user_id = %s",
            (now, now, device, 2),
        )
        cur.execute(
            "SELECT client_temp_id, fingerprint, result FROM sync_applied WHERE device_id = %s AND client_temp_id IN (%s)",
            (device, tag),
        )
        cur.fetchall()
        cur.execute(
            "INSERT INTO customers (name, address, email, phone, meter_rate, kg_rate, active, created_by, created_at,"
            " version, last_modified) VALUES (%s, %s, %s, NULL, 0, NULL, 1, 2, %s, 1, %s)",
            (f"Floor Eating House {i}", f"{i} Jurong Port Rd", f"f{i}@example.sg", now, now),
        )
        customer_id = cur.lastrowid
        cur.execute(
            "INSERT INTO sync_applied (device_id, client_temp_id, op, fingerprint, entity, entity_id, result,"
            " created_at) VALUES (%s, %s, 'customer.create', %s, 'customer', %s, %s, %s)",
            (device, tag, "f" * 64, customer_id, '{"status":"applied"}', now),
        )
        cur.execute("SELECT name, value FROM counters WHERE name IN ('audit', 'feed') ORDER BY name FOR UPDATE")
        counters = dict(cur.fetchall())
        seq, audit_id = counters["feed"] + 1, counters["audit"] + 1
        cur.execute(
            "INSERT INTO change_feed (seq, entity, entity_id, version, scope, deleted, last_modified, doc)"
            " VALUES (%s, 'customer', %s, 1, 0, 0, %s, %s)",
            (seq, customer_id, now, '{"id":%d,"name":"Floor"}' % customer_id),
        )
        cur.execute(
            "INSERT INTO audit_log (id, at, user_id, device_id, action, entity_type, entity_id, context,"
            " prev_hash, hash) VALUES (%s, %s, 2, %s, 'create', 'customer', %s, '{}', %s, %s)",
            (audit_id, now, device, customer_id, "0" * 64, "1" * 64),
        )
        cur.execute(
            "UPDATE counters SET value = CASE name WHEN 'feed' THEN %s ELSE %s END,"
            " head = CASE name WHEN 'audit' THEN %s ELSE head END WHERE name IN ('audit', 'feed')",
            (seq, audit_id, "1" * 64),
        )
        conn.commit()

    return push


def floor_rows(args: argparse.Namespace, url: str, seconds: float) -> list[dict[str, str]]:
    """Raw PyMySQL on the benchmark's database: a 1-change customer push and a 1-change confirmed sale (each
    thread its own truck and customer, tests/bench/floor_sale.py), 50 threads and one thread."""
    import pymysql
    from pymysql.constants import CLIENT
    from sqlalchemy.engine import make_url

    import server
    from domain.settings import Settings

    server.prepare(Settings.from_env({"LPG_DATABASE_URL": url, "LPG_SECRET_KEY": SECRET}), demo=True)  # --only floor
    u = make_url(url)
    pairs = fleet_setup(url, "FLOOR")

    def connect() -> Any:
        conn = pymysql.connect(
            host=u.host,
            port=u.port or 3306,
            user=u.username,
            password=u.password or "",
            database=u.database,
            client_flag=CLIENT.MULTI_STATEMENTS,  # the sale's floor sends several statements a round trip
        )
        conn.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return conn

    setup = connect()
    now = datetime.now(UTC).replace(tzinfo=None)
    cur = setup.cursor()
    for client in range(CLIENTS):
        cur.execute(
            "INSERT IGNORE INTO devices (device_id, user_id, first_seen, applied_count, duplicate_count,"
            " rejected_count, version, last_modified) VALUES (%s, 2, %s, 0, 0, 0, 1, %s)",
            (f"floor-{client}", now, now),
        )
    floor_sale_setup(cur, pairs, now)
    setup.commit()
    setup.close()

    def run(push: Callable[[Any, int, int], None], threads: int, seconds: float, first: int) -> Load:
        load = Load()
        lock = threading.Lock()
        stop_at = [0.0, 0.0]

        def go() -> None:
            stop_at[0] = time.perf_counter()
            stop_at[1] = stop_at[0] + seconds

        barrier = threading.Barrier(threads + 1, action=go, timeout=300)

        def worker(n: int) -> None:
            conn = connect()
            push(conn, n, first)
            barrier.wait()
            mine, i = [], first + 1
            while time.perf_counter() < stop_at[1]:
                t0 = time.perf_counter()
                push(conn, n, i)
                mine.append(time.perf_counter() - t0)
                i += 1
            with lock:
                load.latencies.extend(mine)
            conn.close()

        pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        for t in pool:
            t.join()
        load.elapsed = time.perf_counter() - stop_at[0]
        return load

    rows = []
    for label, push in (
        ("1-change customer push (9 round trips)", floor_customer_push(url)),
        (
            f"1-change confirmed sale (4 round trips; ours: {OUR_SALE_TRIPS}), each thread its own truck and customer",
            floor_sale_push(pairs),
        ),
    ):
        fleet = run(push, CLIENTS, seconds, 0)
        log(f"  floor, {label}, 50 threads: {fleet.summary()}")
        one = run(push, 1, seconds / 2, 10_000_000)
        log(f"  floor, {label}, 1 thread: {one.summary()}")
        rows.append({"measure": f"raw PyMySQL: {label}, 50 threads", "floor": fleet.summary()})
        rows.append({"measure": f"raw PyMySQL: {label}, one thread", "floor": one.summary()})
    return rows


def floor_batch_rate(url: str, batches: int) -> float:
    """500 customers, their idempotency records, feed and audit entries per transaction by `executemany`.

    Every value is a parameter: PyMySQL turns `executemany` into multi-row INSERTs only then."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    ph = "?" if sqlite else "%s"
    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM customers")
    next_id = cur.fetchone()[0] + 1
    cur.execute("SELECT name, value FROM counters WHERE name IN ('audit', 'feed')")
    counters = dict(cur.fetchall())
    raw.commit()
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")

    def q(sql: str) -> str:
        return sql.replace("%s", ph)

    started = time.perf_counter()
    for b in range(batches):
        ids = range(next_id, next_id + BATCH)
        if sqlite:
            cur.execute("BEGIN IMMEDIATE")
        cur.executemany(
            q(
                "INSERT INTO customers (id, name, address, email, meter_rate, active, created_by, created_at, version,"
                " last_modified) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            [(i, f"Floor House {i}", f"{i} Jurong Port Rd", f"f{i}@example.sg", 0, 1, 2, now, 1, now) for i in ids],
        )
        cur.executemany(
            q(
                "INSERT INTO sync_applied (device_id, client_temp_id, op, fingerprint, entity, entity_id, result,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            [
                (
                    "floor-batch",
                    f"fb-{i}",
                    "customer.create",
                    "f" * 64,
                    "customer",
                    i,
                    '{"status":"applied","id":%d}' % i,
                    now,
                )
                for i in ids
            ],
        )
        lock = " FOR UPDATE" if not sqlite else ""
        cur.execute(f"SELECT name, value FROM counters WHERE name IN ('audit', 'feed') ORDER BY name{lock}")
        counters = dict(cur.fetchall())
        seq0, audit0 = counters["feed"], counters["audit"]
        cur.executemany(
            q(
                "INSERT INTO change_feed (seq, entity, entity_id, version, scope, deleted, last_modified, doc)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            [
                (seq0 + k + 1, "customer", i, 1, 0, 0, now, '{"id":%d,"name":"Floor House %d"}' % (i, i))
                for k, i in enumerate(ids)
            ],
        )
        cur.executemany(
            q(
                "INSERT INTO audit_log (id, at, user_id, device_id, action, entity_type, entity_id, context,"
                " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            [
                (audit0 + k + 1, now, 2, "floor-batch", "create", "customer", i, "{}", "0" * 64, "1" * 64)
                for k, i in enumerate(ids)
            ],
        )
        cur.execute(q("UPDATE counters SET value = %s WHERE name = 'feed'"), (seq0 + BATCH,))
        cur.execute(q("UPDATE counters SET value = %s, head = %s WHERE name = 'audit'"), (audit0 + BATCH, "1" * 64))
        raw.commit()
        next_id += BATCH
    rate = batches * BATCH / (time.perf_counter() - started)
    raw.close()
    engine.dispose()
    return rate


# -- sections -----------------------------------------------------------------------------------------------


def batch_rate(port: int, tag: str, make: Callable[[str, int], dict[str, Any]], batches: int) -> float:
    load = hammer_one(port, push_request(tag, make, BATCH), batches)
    if load.errors:
        raise RuntimeError(f"batch push failed: {load.errors[0]}")
    return batches * BATCH / sum(load.latencies)


def pull_rates(port: int) -> tuple[int, float, float]:
    """Rows of the whole feed, rows/s with JSON pages of 1000 and msgpack pages of 10000 (admin)."""
    headers = {"Authorization": f"Bearer {token(1)}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    rates = []
    total = 0
    for fmt, limit in (("json", 1000), ("msgpack", 10000)):
        accept = "application/msgpack" if fmt == "msgpack" else "application/json"
        since, total = 0, 0
        t0 = time.perf_counter()
        while True:
            conn.request(
                "GET", f"/api/v1/sync/changes?since={since}&limit={limit}", headers={**headers, "Accept": accept}
            )
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"pull failed: {response.status} {body[:200]!r}")
            page = decode(ormsgpack.unpackb if fmt == "msgpack" else orjson.loads, body)
            total += len(page["results"])
            since = page["last_seq"]
            if not page["pending"]:
                break
        rates.append(total / (time.perf_counter() - t0))
    return total, rates[0], rates[1]


def ratio(ours: float, peer: float | None) -> str:
    return f"{ours / peer:.2f}×" if peer else ""


SEQ_ROUNDS = 3


def run_builtin(args: argparse.Namespace, only: set[str]) -> list[tuple[str, list[dict[str, str]]]]:
    quick = args.quick
    seconds = 6.0 if quick else 20.0
    seq_count = 150 if quick else 1000
    batches = 4 if quick else 16
    sections: list[tuple[str, list[dict[str, str]]]] = []
    peer: dict[str, Any] = {}

    log("pouchdb-server 4.2.0")
    with pouchdb_server(port=args.port_base + 50) as p:
        if only & {"fleet"}:
            p.request("PUT", "/fleet")
            load = hammer(p.port, peer_post, CLIENTS, seconds)
            peer["fleet"] = load
            log(f"  single-doc POST, 50 clients: {load.summary()}")
            load = hammer_one(p.port, peer_post, seq_count)
            peer["seq"] = load
            log(f"  single-doc POST, one client: {load.summary()}")
        if only & {"batches", "pull"}:
            p = Peer(p.port)  # a fresh keep-alive connection: the first one idled out during the load
            peer["bulk"] = p.bulk_docs_rate(batches=max(batches, 10), batch=BATCH)
            log(f"  _bulk_docs: {peer['bulk']:,.0f} docs/s")
            if "pull" in only:
                rows, peer["changes"] = p.changes_rate("bench_push")
                log(f"  _changes?include_docs=true: {peer['changes']:,.0f} rows/s ({rows} rows)")

    mysql = fresh_mysql(args.mysql_url, args.mysql_db)
    workdir = Path(tempfile.mkdtemp(prefix="lpg-bench-db-"))
    sqlite = f"sqlite:///{workdir}/bench.db"
    try:
        if "fleet" in only:
            log("lpg-sync, MariaDB, 2 workers")
            rows: list[dict[str, str]] = []
            with lpg_server(mysql, args.port_base + 1, workers=2) as port:
                stock_up(mysql)
                spread = spread_sale(fleet_setup(mysql))
                for label, make, target, factor in (
                    ("customer.create", customer, "≥ 1.0× peer, p99 < 150 ms", 1.0),
                    (
                        "confirmed sale, each device its own truck and customer",
                        spread,
                        "≥ 0.5× peer, p99 < 150 ms",
                        0.5,
                    ),
                    ("confirmed sale, all 50 from one truck to 5 customers", sale, "", 0.0),
                ):
                    settle(mysql)
                    load = hammer(port, push_request(f"fleet-{label[:4]}{len(rows)}", make), CLIENTS, seconds)
                    if load.errors:
                        raise RuntimeError(f"fleet push failed ({len(load.errors)}): {load.errors[0]}")
                    log(f"  1-change {label}, 50 devices: {load.summary()}")
                    rows.append(
                        {
                            "measure": f"50 devices, 1-change {label} (MariaDB, 2 workers) vs single-doc POST, 50 clients",
                            "ours": load.summary(),
                            "peer": peer["fleet"].summary() if "fleet" in peer else "",
                            "ratio": ratio(load.rate, peer["fleet"].rate if "fleet" in peer else None),
                            "target": target,
                            "met": _met(
                                "fleet" in peer and load.rate >= factor * peer["fleet"].rate and load.pct(0.99) < 150
                            )
                            if target
                            else "",
                        }
                    )
                # Three rounds of each, interleaved (customer, sale, customer, ...), each on a database at
                # rest, pooled into one distribution: the machine's speed drifts for minutes at a time (one
                # round of sales measured p50 6.6 ms, the next 9.9 ms), and one round would be one draw of it.
                sequential = {"customer.create": (customer, 5.0, Load()), "confirmed sale": (sale, 8.0, Load())}
                rounds: dict[str, list[str]] = {label: [] for label in sequential}
                for n in range(SEQ_ROUNDS):
                    for label, (make, _limit, pooled) in sequential.items():
                        settle(mysql)
                        load = hammer_one(port, push_request(f"seq{n}-{label[:4]}", make), seq_count)
                        if load.errors:
                            raise RuntimeError(f"sequential push failed: {load.errors[0]}")
                        log(f"  1-change {label}, one device, round {n + 1}: {load.summary()}")
                        rounds[label].append(f"{load.pct(0.5):.1f}")
                        pooled.latencies += load.latencies
                        pooled.elapsed += load.elapsed
                for label, (_make, limit, load) in sequential.items():
                    rows.append(
                        {
                            "measure": f"one device, sequential 1-change {label} vs one client's POSTs "
                            f"({SEQ_ROUNDS} rounds of {seq_count}, pooled; p50 of each round: {' / '.join(rounds[label])} ms)",
                            "ours": load.summary(),
                            "peer": peer["seq"].summary() if "seq" in peer else "",
                            "ratio": ratio(load.rate, peer["seq"].rate if "seq" in peer else None),
                            "target": f"p50 < {limit:.0f} ms",
                            "met": _met(load.pct(0.5) < limit),
                        }
                    )
            sections.append(("Small pushes over HTTP", rows))

        if only & {"batches", "pull"}:
            rows = []
            bulk = peer.get("bulk")
            for engine, url in (("SQLite", sqlite), ("MariaDB", mysql)):
                log(f"lpg-sync, {engine}, 1 worker, batches of {BATCH}")
                with lpg_server(url, args.port_base + 2) as port:
                    stock_up(url)
                    settle(mysql)  # both engines: the database server's purge of what came before competes for the CPU
                    rate = batch_rate(port, f"batch-{engine}-c", customer, batches)
                    log(f"  customer.create: {rate:,.0f}/s")
                    rows.append(
                        {
                            "measure": f"batches of 500 customer.create, {engine} vs _bulk_docs of 500",
                            "ours": f"{rate:,.0f}/s",
                            "peer": f"{bulk:,.0f}/s" if bulk else "",
                            "ratio": ratio(rate, bulk),
                            "target": "≥ 1.0× peer",
                            "met": _met(bool(bulk) and rate >= bulk),
                        }
                    )
                    settle(mysql)
                    rate = sale_rate = batch_rate(port, f"batch-{engine}-s", sale, batches)
                    log(f"  confirmed sales: {rate:,.0f}/s")
                    rows.append(
                        {
                            "measure": f"batches of 500 confirmed sales, {engine}",
                            "ours": f"{rate:,.0f}/s",
                            "target": "≥ 2,000/s" if engine == "MariaDB" else "",
                            "met": _met(rate >= 2000) if engine == "MariaDB" else "",
                        }
                    )
                    if "pull" in only:
                        settle(mysql)
                        total, json_rate, msgpack_rate = pull_rates(port)
                        changes = peer.get("changes")
                        log(f"  pull of {total} rows: JSON {json_rate:,.0f}/s, msgpack {msgpack_rate:,.0f}/s")
                        rows.append(
                            {
                                "measure": f"pull of {total:,} feed rows, {engine}: JSON pages of 1000 / msgpack pages of 10000 vs _changes?include_docs=true",
                                "ours": f"{json_rate:,.0f}/s / {msgpack_rate:,.0f}/s",
                                "peer": f"{changes:,.0f}/s" if changes else "",
                                "ratio": f"{ratio(json_rate, changes)} / {ratio(msgpack_rate, changes)}",
                                "target": "msgpack ≥ 5× peer",
                                "met": _met(bool(changes) and msgpack_rate >= 5 * changes),
                            }
                        )
                if "floor" in only:
                    rate = floor_batch_rate(url, batches)
                    log(f"  raw floor, 500 customers a transaction: {rate:,.0f}/s")
                    rows.append(
                        {
                            "measure": f"raw floor: 500 customers + idempotency + feed + audit a transaction by executemany, {engine}",
                            "floor": f"{rate:,.0f}/s",
                            "ratio": ratio(rate, bulk) + " of peer" if bulk else "",
                        }
                    )
                    rate, recorded = replay_floor_rate(url, SECRET, sale, BATCH, max(4, batches // 2))
                    log(
                        f"  raw floor, the writes of 500 sales replayed: {rate:,.0f}/s (ours in-process {recorded:,.0f}/s)"
                    )
                    rows.append(
                        {
                            "measure": f"raw floor: the writes of batches of 500 confirmed sales (recorded from our reconciler, replayed by the bare driver, tests/bench/replay_floor.py), {engine}",
                            "ours": f"{sale_rate:,.0f}/s",
                            "floor": f"{rate:,.0f}/s",
                            "ratio": f"{sale_rate / rate:.2f}× of the floor",
                            "target": "≥ 2,000/s" if engine == "MariaDB" else "",
                        }
                    )
            sections.append(("Batches and pull", rows))

        if "floor" in only:
            log("raw floor, MariaDB")
            sections.append(
                ("The floor: raw PyMySQL, the same rows, the fewest round trips", floor_rows(args, mysql, seconds))
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return sections


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def extra_modules() -> list[str]:
    return sorted(
        p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in NOT_SECTIONS and not p.stem.startswith("_")
    )


def run_extra(args: argparse.Namespace, only: set[str] | None) -> list[tuple[str, list[dict[str, str]]]]:
    sections = []
    for name in extra_modules():
        if only is not None and name not in only:
            continue
        module = importlib.import_module(f"tests.bench.{name}")
        bench = getattr(module, "bench_rows", None)
        if bench is None:
            continue
        log(f"section {name}")
        rows = bench(args)
        sections.append((getattr(module, "SECTION", name), rows))
    return sections


# -- the report ---------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem_gib = int(mem.split()[1]) / 1024 / 1024
    except (OSError, StopIteration):
        mem_gib = 0
    versions = []
    for module in ("sqlalchemy", "pymysql", "starlette", "uvicorn"):
        try:
            versions.append(f"{module} {importlib.import_module(module).__version__}")
        except (ImportError, AttributeError):
            pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        node = "?"
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, {', '.join(versions)}; node {node}; "
        f"load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )


def mariadb_version(url: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT VERSION()").scalar())
    except SQLAlchemyError as exc:  # the report still gets written
        return f"unknown ({exc.__class__.__name__})"
    finally:
        engine.dispose()


def render(sections: list[tuple[str, list[dict[str, str]]]], header: str) -> str:
    lines = [header, ""]
    for title, rows in sections:
        lines += [f"#### {title}", "", "| measure | lpg-sync | pouchdb-server | raw floor | ratio | target | met |"]
        lines.append("|---|---:|---:|---:|---:|---|---|")
        for row in rows:
            cells = [row.get(k, "") for k in ("measure", "ours", "peer", "floor", "ratio", "target", "met")]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(path: Path, block: str) -> None:
    intro = (
        "# Benchmarks\n\n"
        "Written by `python tests/bench/run.py` (never by hand): lpg-sync and pouchdb-server 4.2.0 side by side\n"
        "in one run on 127.0.0.1, with the raw floor (the same rows written by raw PyMySQL / sqlite3 with the\n"
        "fewest round trips). The machine is shared and noisy: compare the ratios within one run.\n\n" + MARK + "\n\n"
    )
    old = path.read_text() if path.exists() else ""
    previous = old.split(MARK, 1)[1].lstrip("\n") if MARK in old else ""
    path.write_text(intro + block.rstrip() + "\n\n" + previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 3 minutes)")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("LPG_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
        help="a MariaDB server URL; a database named --mysql-db is dropped and created on it",
    )
    parser.add_argument("--mysql-db", default="test_write_bench")
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("LPG_BENCH_PORT_BASE", "18800")))
    parser.add_argument("--only", default="", help="comma-separated sections: fleet,batches,pull,floor,<module>")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    chosen = {s for s in args.only.split(",") if s} or None
    started = datetime.now(UTC)
    header = (
        f"### {started:%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}\n\n"
        f"{machine()}; MariaDB {mariadb_version(args.mysql_url)}"
    )
    builtin = set(BUILTIN) if chosen is None else chosen & set(BUILTIN)
    sections = run_builtin(args, builtin) if builtin else []
    sections += run_extra(args, chosen)
    block = render(sections, header + f"; {(datetime.now(UTC) - started).total_seconds() / 60:.0f} min")
    print(block)
    if not args.no_write:
        write_report(Path(args.out), block)
        log(f"written to {args.out}")


if __name__ == "__main__":
    main()
