"""Benchmark: stock PouchDB 9 replicating with /couchdb, side by side with pouchdb-server in one run.

    . .venv/bin/activate && python tests/bench/couch.py [--rows 100000] [--push 10000] [--engine sqlite|mysql]

1. Pull: the feed is seeded with `--rows` documents (tests/bench/pull.py's seeding); pouchdb-server 4.2.0 is
   loaded with the same documents (same ids and bodies) through `_bulk_docs`. The same Node PouchDB
   (memory adapter, tests/couch/node/bench.js) replicates everything from `/couchdb/lpg` (as admin, HTTP
   Basic) and from the peer, with `batch_size` 100 and 1000 (`batches_limit` 4).
   The first row is the client's ceiling: the same PouchDB writing the same number of documents with
   `bulkDocs(new_edits: false)` and no server at all; no replication into it can be faster.
   The floor is the same replication (batch_size 1000) from a server that costs nothing: tests/couch/node/
   replay.js records what `/couchdb/lpg` answers to one replication, then answers a second one from memory.
2. Push: `--push` new-customer changes, once through `POST /api/v1/sync/push` in batches of 500 and once
   as a PouchDB queue replicated to `/couchdb/queue-<device>` with `batch_size` 500, each on its own device.

`rows()` returns the measurements; run alone, the module prints them as a Markdown table. `bench_rows()` is
the section `tests/bench/run.py` adds to docs/benchmarks.md (SQLite; 100,000 documents, 20,000 with `--quick`;
10,000 queued changes either way), with the issue's targets: pull at least as fast as pouchdb-server and
>= 20,000 docs/s with `batch_size` 1000; push by replication >= 0.5x the native push. The figures are
noisy on a shared machine: run it on an idle one to compare releases.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.peer import pouchdb_server  # noqa: E402
from tests.bench.pull import DOC, ENTITIES, SECRET, seed  # noqa: E402

NODE = ROOT / "tests" / "couch" / "node"
SERVER_PORT = int(os.environ.get("LPG_BENCH_PORT", "18451"))
PEER_PORT = int(os.environ.get("LPG_BENCH_PEER_PORT", "18450"))
REPLAY_PORT = int(os.environ.get("LPG_BENCH_REPLAY_PORT", "18452"))
PUSH_BATCH = 500
Row = tuple[str, str, int, int, float]  # (what, source, batch, docs, docs/s)
SECTION = "CouchDB replication: stock PouchDB 9 (memory adapter) against /couchdb, SQLite, one worker"


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


@contextmanager
def lpg_server(url: str) -> Iterator[str]:
    env = {**os.environ, "LPG_SECRET_KEY": SECRET, "LPG_DATABASE_URL": url, "LPG_SQLITE_SYNCHRONOUS": "NORMAL"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "--port", str(SERVER_PORT), "--no-demo"],
        cwd=tempfile.mkdtemp(prefix="lpg-bench-couch-"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", SERVER_PORT, timeout=2)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the server did not start")
        yield f"http://127.0.0.1:{SERVER_PORT}"
    finally:
        proc.terminate()
        proc.wait(20)


def node(*args: str) -> dict[str, Any]:
    out = subprocess.run(["node", "bench.js", *args], cwd=NODE, capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"bench.js {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def replay_rate(base: str, total: int) -> float:
    """The client alone: PouchDB replicating (batch_size 1000) from tests/couch/node/replay.js, which first
    records what `/couchdb/lpg` answers to one replication, then answers a second one from memory."""
    proc = subprocess.Popen(["node", "replay.js", str(REPLAY_PORT), base], cwd=NODE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        target = f"http://127.0.0.1:{REPLAY_PORT}/couchdb/lpg"
        recorded = node("pull", target, "admin", "admin-lpg-2026", "1000")
        conn = http.client.HTTPConnection("127.0.0.1", REPLAY_PORT, timeout=10)
        conn.request("POST", "/__replay__")
        assert conn.getresponse().status == 200
        result = node("pull", target, "admin", "admin-lpg-2026", "1000")
        assert result["docs"] == recorded["docs"] == total and not result["failures"], result
        return float(result["docs"] / result["seconds"])
    finally:
        proc.terminate()
        proc.wait(10)


def peer_doc(n: int) -> dict[str, Any]:
    seq = n + 1
    return {"_id": f"{ENTITIES[seq % 5]}:{seq}", **orjson.loads(DOC.format(id=seq))}


def native_push(base: str, count: int, device: str) -> float:
    from domain.accounts.tokens import ACCESS, encode_token
    from domain.settings import Settings

    token, _ = encode_token(Settings.from_env({"LPG_SECRET_KEY": SECRET}), 2, ACCESS)  # driver1 of the demo
    conn = http.client.HTTPConnection("127.0.0.1", SERVER_PORT, timeout=300)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for start in range(0, count, PUSH_BATCH):
        changes = [
            {
                "client_temp_id": f"{device}-{i}",
                "op": "customer.create",
                "data": {
                    "name": f"Bench Eating House {i}",
                    "address": f"{i} Jurong Port Rd",
                    "email": f"bench{i}@example.sg",
                },
            }
            for i in range(start, min(count, start + PUSH_BATCH))
        ]
        conn.request(
            "POST", "/api/v1/sync/push", body=orjson.dumps({"device_id": device, "changes": changes}), headers=headers
        )
        response = conn.getresponse()
        body = orjson.loads(response.read())
        if response.status != 200 or {r["status"] for r in body["results"]} != {"applied"}:
            raise RuntimeError(f"native push failed: {response.status}")
    return count / (time.perf_counter() - started)


def rows(total: int = 100_000, push: int = 10_000, engine: str = "sqlite", mysql_url: str | None = None) -> list[Row]:
    out: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="lpg-bench-couch-db-"))
    try:
        url = f"sqlite:///{work}/bench.db" if engine == "sqlite" else str(mysql_url)
        log(f"seeding {total} feed rows ({engine})")
        seed(url, total)
        with pouchdb_server(PEER_PORT) as peer:
            log(f"loading {total} documents into pouchdb-server")
            peer.load("bench", total, 1000, peer_doc)
            peer_url = f"http://127.0.0.1:{peer.port}/bench"
            with lpg_server(url) as base:
                ceiling = node("ceiling", "-", "-", "-", "1000", str(total))
                rate = ceiling["docs"] / ceiling["seconds"]
                out.append(("write only", "PouchDB memory adapter, no server", 1000, ceiling["docs"], rate))
                log(f"  the client's own ceiling: {rate:9,.0f} docs/s")
                for batch in (100, 1000):
                    for source, target, user in (
                        ("lpg-sync /couchdb/lpg", f"{base}/couchdb/lpg", ("admin", "admin-lpg-2026")),
                        ("pouchdb-server 4.2.0", peer_url, ("", "")),
                    ):
                        result = node("pull", target, user[0], user[1], str(batch))
                        assert result["docs"] == total and not result["failures"], result
                        rate = result["docs"] / result["seconds"]
                        out.append(("pull", source, batch, result["docs"], rate))
                        log(f"  pull {source:24} batch {batch:5}: {rate:9,.0f} docs/s")
                rate = replay_rate(f"{base}", total)
                out.append(("pull", "replay of /couchdb/lpg's recorded answers", 1000, total, rate))
                log(f"  pull from a zero-cost replay server, batch  1000: {rate:9,.0f} docs/s")
                if push:
                    rate = native_push(base, push, "bench-native")
                    out.append(("push", "POST /api/v1/sync/push", PUSH_BATCH, push, rate))
                    log(f"  push native: {rate:9,.0f} changes/s")
                    result = node(
                        "push",
                        f"{base}/couchdb/queue-bench-couch",
                        "driver1",
                        "driver1-lpg-2026",
                        str(PUSH_BATCH),
                        str(push),
                        "bench-couch",
                    )
                    assert result["docs"] == push and not result["failures"], result
                    rate = push / result["seconds"]
                    out.append(("push", "PouchDB -> /couchdb/queue-<device>", PUSH_BATCH, push, rate))
                    log(f"  push by replication: {rate:9,.0f} changes/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def bench_rows(args: argparse.Namespace) -> list[dict[str, str]]:
    total = 20_000 if getattr(args, "quick", False) else 100_000
    table = rows(total, 10_000, "sqlite")
    rate = {(what, source.split()[0], batch): r for what, source, batch, _, r in table}
    out = [
        {
            "measure": f"the client's ceiling: the same PouchDB writing {total:,} docs, bulkDocs of 1000, no server",
            "floor": f"{rate[('write only', 'PouchDB', 1000)]:,.0f} docs/s",
        }
    ]
    replay = rate[("pull", "replay", 1000)]
    out.append(
        {
            "measure": "the floor: the same PouchDB replicating from a server that costs nothing (the answers of"
            " /couchdb/lpg recorded, then replayed from memory by tests/couch/node/replay.js), batch_size 1000",
            "floor": f"{replay:,.0f} docs/s",
        }
    )
    for batch in (100, 1000):
        ours, peer = rate[("pull", "lpg-sync", batch)], rate[("pull", "pouchdb-server", batch)]
        target = "≥ 1.0× peer" + (", ≥ 20,000 docs/s" if batch == 1000 else "")
        met = ours >= peer and (batch != 1000 or ours >= 20_000)
        out.append(
            {
                "measure": f"PouchDB replicate.from {total:,} docs, batch_size {batch}: /couchdb/lpg vs pouchdb-server",
                "ours": f"{ours:,.0f} docs/s",
                "peer": f"{peer:,.0f} docs/s",
                "ratio": f"{ours / peer:.2f}×" + (f"; {ours / replay:.2f}× of the floor" if batch == 1000 else ""),
                "target": target,
                "met": "yes" if met else "no",
            }
        )
    native, replicated = rate[("push", "POST", PUSH_BATCH)], rate[("push", "PouchDB", PUSH_BATCH)]
    out.append(
        {
            "measure": "10,000 queued customer.create: PouchDB replicate.to /couchdb/queue-<device> (batch_size 500)"
            " vs the native push in batches of 500 (floor column)",
            "ours": f"{replicated:,.0f}/s",
            "floor": f"{native:,.0f}/s",
            "ratio": f"{replicated / native:.2f}× native",
            "target": "≥ 0.5× native",
            "met": "yes" if replicated >= 0.5 * native else "no",
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--push", type=int, default=10_000)
    parser.add_argument("--engine", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--mysql-url", default="mysql+pymysql://root@127.0.0.1:3306/test_couch")
    args = parser.parse_args()
    table = rows(args.rows, args.push, args.engine, args.mysql_url)
    print("| what | source / target | batch_size | docs | docs/s |")
    print("|---|---|---:|---:|---:|")
    for what, source, batch, docs, rate in table:
        print(f"| {what} | {source} | {batch} | {docs:,} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
