"""The peer the benchmarks compare against: pouchdb-server 4.2.0 (CouchDB's protocol in Node, on leveldb).

Installed with npm into a cache folder on first use (LPG_BENCH_PEER_DIR, default /tmp/lpg-peer), started on
127.0.0.1 with a temporary data directory, and driven by one keep-alive client, as the other server is measured (see docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

PEER_DIR = Path(os.environ.get("LPG_BENCH_PEER_DIR", Path(tempfile.gettempdir()) / "lpg-peer"))
VERSION = "4.2.0"


def decode(loads: Any, body: bytes) -> Any:
    """A page decoded by the benchmark's client with the garbage collector paused, as msgpack's documentation
    advises for large messages: a page of 10,000 results is some 300,000 new objects, and collections scanning
    the client's own heap while it decodes would be counted as the server's time. Both servers' pages are
    decoded this way."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return loads(body)
    finally:
        if enabled:
            gc.enable()


def ensure_installed() -> Path:
    binary = PEER_DIR / "node_modules" / ".bin" / "pouchdb-server"
    if not binary.exists():
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PEER_DIR), f"pouchdb-server@{VERSION}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        raw = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if raw is not None else {}
        self.conn.request(method, path, body=raw, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    @staticmethod
    def doc(n: int) -> dict[str, object]:
        """About 316 bytes of JSON, like a customer record."""
        return {
            "_id": f"customer-{n:09d}",
            "type": "customer",
            "name": f"Bench Eating House {n}",
            "address": f"{n} Jurong Port Road, #01-{n % 100:02d}, Singapore 619094",
            "email": f"bench{n}@example.sg",
            "phone": "+65 6123 4567",
            "meter_rate": "3.2000",
            "kg_rate": "2.6000",
            "active": True,
            "meters": [{"serial": f"MTR-{n:07d}", "last_reading": "1532.40"}],
        }

    def load(self, db: str, total: int, batch: int = 500, doc: Any = None) -> float:
        """Create `db` and `_bulk_docs` `total` new documents; returns docs/s."""
        make = doc or self.doc
        self.request("PUT", f"/{db}")
        started = time.perf_counter()
        for start in range(0, total, batch):
            status, body = self.request(
                "POST", f"/{db}/_bulk_docs", {"docs": [make(n) for n in range(start, min(total, start + batch))]}
            )
            if status != 201:
                raise RuntimeError(f"_bulk_docs failed: {status} {body[:200]!r}")
        return total / (time.perf_counter() - started)

    def bulk_docs_rate(self, batches: int = 200, batch: int = 500) -> float:
        return self.load("bench_push", batches * batch, batch)

    def changes_rate(self, db: str, page: int = 1000) -> tuple[int, float]:
        """Page through `_changes?include_docs=true`; returns (rows, rows/s)."""
        since: object = 0
        rows = 0
        started = time.perf_counter()
        while True:
            status, body = self.request("GET", f"/{db}/_changes?include_docs=true&limit={page}&since={since}")
            if status != 200:
                raise RuntimeError(f"_changes failed: {status}")
            data = decode(orjson.loads, body)
            if not data["results"]:
                break
            rows += len(data["results"])
            since = data["last_seq"]
        return rows, rows / (time.perf_counter() - started)


@contextmanager
def pouchdb_server(port: int | None = None) -> Iterator[Peer]:
    binary = ensure_installed()
    port = port or _free_port()
    data = Path(tempfile.mkdtemp(prefix="lpg-peer-data-"))
    proc = subprocess.Popen(
        [str(binary), "-p", str(port), "-o", "127.0.0.1", "-d", str(data), "-c", str(data / "config.json")],
        cwd=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("pouchdb-server did not start")
        yield Peer(port)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)
