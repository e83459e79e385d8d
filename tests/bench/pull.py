"""Benchmark (run by hand): a full initial pull of 1,000,000 feed rows over HTTP, side by side with
pouchdb-server 4.2.0's `_changes?include_docs=true` measured in the same run.

    /work/venv/bin/python tests/bench/pull.py --rows 1000000 \
        --mysql-url mysql+pymysql://root@127.0.0.1:3306/test_pull --pouch-dir /tmp/pouch --pouch-rows 200000

Per engine (SQLite file, MariaDB): seed N rows straight into `change_feed` with multi-row INSERTs (the
count triggers are dropped while seeding and the bucket counts rebuilt after, exactly like migration
0002_pull does for existing rows), start `uvicorn server:create_app_from_env` on 127.0.0.1, and pull
everything from since=0 as an admin with one keep-alive client that decodes every page: JSON pages, msgpack
pages (limit 1000 and 10000), and continuous (NDJSON and msgpack). The server's RSS is sampled every 50 ms.
pouchdb-server (`npm install pouchdb-server@4.2.0` into --pouch-dir) is loaded with --pouch-rows docs of the
same shape through `_bulk_docs` and paged with `limit=1000`; its rate is rows/s, so fewer rows compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import msgpack
import orjson
import ormsgpack
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.peer import decode  # noqa: E402
from tests.support.pull_support import ServerProcess  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 40
ENTITIES = ("transaction", "customer", "distribution", "invoice", "truck_stock")
DOC = (
    '{{"amount":"12.70","customer":3,"id":{id},"items":[{{"equipment":"CYL14","quantity":2,"unit_price":"6.35"}}],'
    '"last_modified":"2026-11-24T03:15:30.121950Z","number":"TRX-2026-{id:06d}","occurred_at":"2026-11-24T03:15:30.121950Z",'
    '"status":"confirmed","truck":2,"version":1}}'
)


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- seeding -----------------------------------------------------------------------------------------------


def seed(url: str, rows: int) -> None:
    import importlib.util

    from domain.db import Database
    from domain.schema import upgrade
    from domain.settings import Settings

    spec = importlib.util.spec_from_file_location("m0002", ROOT / "alembic/versions/0002_pull.py")
    assert spec and spec.loader
    m0002 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0002)
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if not sqlite:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            for (name,) in conn.exec_driver_sql("SHOW TABLES").all():
                conn.exec_driver_sql(f"DROP TABLE `{name}`")
    upgrade(engine)
    db = Database(Settings.from_env({"LPG_DATABASE_URL": url}, secret_key=SECRET, env="test"))
    from domain.demo import load_demo

    load_demo(db)
    db.dispose()
    t0 = time.monotonic()
    with engine.begin() as conn:
        for name in m0002.TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        conn.exec_driver_sql("DELETE FROM change_feed")
        conn.exec_driver_sql("DELETE FROM change_feed_counts")
    raw = engine.raw_connection()
    cur = raw.cursor()
    ph = "?" if sqlite else "%s"
    batch = 2000
    for start in range(1, rows + 1, batch):
        values: list[Any] = []
        for seq in range(start, min(rows, start + batch - 1) + 1):
            scope = 0 if seq % 5 in (1, 4) else 2 + seq % 7
            values += (seq, ENTITIES[seq % 5], seq, 1, scope, 0, "2026-11-24 03:15:30.121950", DOC.format(id=seq))
        n = len(values) // 8
        row = "(" + ",".join([ph] * 8) + ")"
        cur.execute(
            "INSERT INTO change_feed (seq, entity, entity_id, version, scope, deleted, last_modified, doc) VALUES "
            + ",".join([row] * n),
            values,
        )
    cur.execute(f"UPDATE counters SET value = {rows} WHERE name = 'feed'")
    raw.commit()
    raw.close()
    bucket = "(seq >> 10)" if sqlite else "(seq DIV 1024)"
    with engine.begin() as conn:
        for scope, entity in (("scope", "entity"), ("scope", "'*'"), ("-1", "entity"), ("-1", "'*'")):
            conn.exec_driver_sql(
                "INSERT INTO change_feed_counts (scope, entity, bucket, n) "
                f"SELECT {scope}, {entity}, {bucket}, COUNT(*) FROM change_feed GROUP BY 1, 2, 3"
            )
        for statement in m0002._sqlite() if sqlite else m0002._mysql():
            conn.exec_driver_sql(statement)
    engine.dispose()
    log(f"  seeded {rows} rows in {time.monotonic() - t0:.1f} s")


# -- measuring ---------------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def pull_pages(http: httpx.Client, headers: dict[str, str], fmt: str, limit: int) -> int:
    since, total = 0, 0
    h = dict(headers, Accept="application/msgpack" if fmt == "msgpack" else "application/json")
    while True:
        r = http.get("/api/v1/sync/changes", params={"since": since, "limit": limit}, headers=h)
        r.raise_for_status()
        page = decode(ormsgpack.unpackb if fmt == "msgpack" else orjson.loads, r.content)
        total += len(page["results"])
        since = page["last_seq"]
        if not page["pending"]:
            return total


def pull_continuous(http: httpx.Client, headers: dict[str, str], fmt: str, expected: int) -> int:
    """Continuous streams from since=0 until every row arrived (reconnecting at the stream's end)."""
    since, total = 0, 0
    h = dict(headers, Accept="application/msgpack" if fmt == "msgpack" else "application/x-ndjson")
    while total < expected:
        params = {"since": since, "feed": "continuous", "limit": 5000, "timeout": 60_000}
        with http.stream("GET", "/api/v1/sync/changes", params=params, headers=h) as r:
            r.raise_for_status()
            if fmt == "msgpack":
                unpacker = msgpack.Unpacker()
                for chunk in r.iter_raw():
                    unpacker.feed(chunk)
                    for item in unpacker:
                        if "seq" in item:
                            total += 1
                            since = item["seq"]
                    if total >= expected:
                        break
            else:
                buffer = b""
                for chunk in r.iter_raw():
                    lines = (buffer + chunk).split(b"\n")
                    buffer = lines.pop()
                    for line in lines:
                        if line:
                            item = orjson.loads(line)
                            if "seq" in item:
                                total += 1
                                since = item["seq"]
                    if total >= expected:
                        break
    return total


def bench_engine(name: str, url: str, rows: int, results: list[tuple[str, str, int, float, float, int]]) -> None:
    from domain.accounts.tokens import ACCESS, encode_token
    from domain.settings import Settings

    log(f"{name}: seeding {rows} rows")
    seed(url, rows)
    settings = Settings.from_env({"LPG_DATABASE_URL": url}, secret_key=SECRET, env="test")
    token, _ = encode_token(settings, 1, ACCESS)
    headers = {"Authorization": f"Bearer {token}"}
    server = ServerProcess(url, SECRET, tempfile.mktemp(suffix=".log"), pool=20)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            http.get("/api/v1/sync/changes", params={"limit": 10}, headers=headers).raise_for_status()
            base = rss_kib(server.proc.pid)
            modes: list[tuple[str, Any]] = [
                ("JSON pages, limit 1000", lambda: pull_pages(http, headers, "json", 1000)),
                ("msgpack pages, limit 1000", lambda: pull_pages(http, headers, "msgpack", 1000)),
                ("JSON pages, limit 10000", lambda: pull_pages(http, headers, "json", 10000)),
                ("msgpack pages, limit 10000", lambda: pull_pages(http, headers, "msgpack", 10000)),
                ("continuous NDJSON", lambda: pull_continuous(http, headers, "json", rows)),
                ("continuous msgpack", lambda: pull_continuous(http, headers, "msgpack", rows)),
            ]
            for label, run in modes:
                with RssSampler(server.proc.pid) as sampler:
                    t0 = time.monotonic()
                    got = run()
                    elapsed = time.monotonic() - t0
                assert got == rows, (label, got, rows)
                results.append((name, label, got, elapsed, got / elapsed, max(sampler.peak - base, 0)))
                log(
                    f"  {label}: {got / elapsed:,.0f} rows/s, {elapsed:.1f} s, RSS +{(sampler.peak - base) / 1024:.1f} MiB"
                )
    finally:
        server.stop()


# -- pouchdb-server ----------------------------------------------------------------------------------------


def bench_pouch(pouch_dir: str, rows: int, results: list[tuple[str, str, int, float, float, int]]) -> None:
    import socket

    binary = Path(pouch_dir) / "node_modules/.bin/pouchdb-server"
    if not binary.exists():
        log(f"pouchdb-server not found in {pouch_dir}: npm install pouchdb-server@4.2.0 there first")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tempfile.mkdtemp(prefix="pouch-")
    proc = subprocess.Popen(
        [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            data,
            "--config",
            f"{data}/config.json",
            "-n",
        ],
        cwd=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base_url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base_url, timeout=300) as http:
            http.put("/bench").raise_for_status()
            log(f"pouchdb-server: loading {rows} docs")
            t0 = time.monotonic()
            for start in range(1, rows + 1, 1000):
                docs = [
                    {"_id": f"transaction:{i:08d}", **orjson.loads(DOC.format(id=i))}
                    for i in range(start, min(rows, start + 999) + 1)
                ]
                http.post(
                    "/bench/_bulk_docs",
                    content=orjson.dumps({"docs": docs}),
                    headers={"Content-Type": "application/json"},
                ).raise_for_status()
            log(f"  loaded in {time.monotonic() - t0:.1f} s")
            base = rss_kib(proc.pid)
            with RssSampler(proc.pid) as sampler:
                t0 = time.monotonic()
                since: Any = 0
                total = 0
                while True:
                    r = http.get("/bench/_changes", params={"include_docs": "true", "limit": 1000, "since": since})
                    page = decode(orjson.loads, r.content)
                    if not page["results"]:
                        break
                    total += len(page["results"])
                    since = page["last_seq"]
                elapsed = time.monotonic() - t0
            results.append(
                (
                    "pouchdb-server 4.2.0",
                    "_changes?include_docs=true&limit=1000",
                    total,
                    elapsed,
                    total / elapsed,
                    max(sampler.peak - base, 0),
                )
            )
            log(f"  pouch: {total / elapsed:,.0f} rows/s")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mysql-url", default=os.environ.get("LPG_TEST_MYSQL_URL", ""))
    parser.add_argument("--engines", default="sqlite,mysql")
    parser.add_argument("--pouch-dir", default="/tmp/pouch")
    parser.add_argument("--pouch-rows", type=int, default=200_000)
    args = parser.parse_args()
    results: list[tuple[str, str, int, float, float, int]] = []
    if args.pouch_rows:
        bench_pouch(args.pouch_dir, args.pouch_rows, results)
    tmp = tempfile.mkdtemp(prefix="pullbench-")
    try:
        for engine in args.engines.split(","):
            if engine == "sqlite":
                bench_engine("lpg-sync SQLite", f"sqlite:///{tmp}/bench.db", args.rows, results)
            elif engine == "mysql" and args.mysql_url:
                bench_engine("lpg-sync MariaDB", args.mysql_url, args.rows, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pouch = next((r[4] for r in results if r[0].startswith("pouchdb")), None)
    print(
        f"\nFull initial pull over HTTP, 127.0.0.1, one keep-alive client decoding every row ({os.cpu_count()} cores, shared machine)\n"
    )
    print("| server | mode | rows | seconds | rows/s | x pouchdb | server RSS growth |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for server, mode, rows, elapsed, rate, rss in results:
        ratio = f"{rate / pouch:.1f}x" if pouch else "-"
        print(f"| {server} | {mode} | {rows:,} | {elapsed:.1f} | {rate:,.0f} | {ratio} | {rss / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
