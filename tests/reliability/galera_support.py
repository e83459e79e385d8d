"""A Galera cluster as the tests see it: the node URLs, `python server.py` processes on chosen nodes, and a
simulated tablet that pushes and pulls over HTTP the way a client must (503 + Retry-After: wait, send the
same batch again; the connection lost: send the same batch again, through the other server).

The cluster itself is `.ci/galera` (node N: MariaDB on 335N); the tests call it to kill and restart nodes.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.conftest import GALERA_URLS, SECRET
from tests.support.children import stop_child, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
GALERA_SCRIPT = ROOT / ".ci" / "galera"
# Servers of these tests listen on 18200-18299 (the Galera nodes are 3351-3353).
PORTS = iter(range(18210, 18300))


def node_url(n: int) -> str:
    return GALERA_URLS[n - 1]


def galera(*args: str, timeout: float = 300) -> str:
    """Run `.ci/galera ARGS` (kill N, start-node N, status) and return its output."""
    done = subprocess.run(
        ["bash", str(GALERA_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f".ci/galera {' '.join(args)} failed: {done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18210-18299")


class Server:
    """`python server.py` on one node, as a subprocess (its own pool, its own process: stateless)."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="lpg-galera-server-", suffix=".log")[1])
        environ = {
            **os.environ,
            "LPG_SECRET_KEY": SECRET,
            "LPG_ENV": "test",
            "LPG_DB_POOL_SIZE": "12",
            **env,
        }
        command = [sys.executable, str(ROOT / "server.py"), "--no-migrate", "--no-demo"]
        self.proc = subprocess.Popen(
            [*command, "--database-url", database_url, "--port", str(self.port)],
            cwd=tempfile.mkdtemp(prefix="lpg-galera-cwd-"),
            env=environ,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(
                self.proc,
                f"http://127.0.0.1:{self.port}",
                60,
                probe_timeout=2,
                pause=0.2,
                where=lambda: f": {self.log.read_text()[-3000:]}",
            )
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_child(self.proc, grace=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def failure_excerpt(logs: str, limit: int = 6000) -> str:
    """The servers' tracebacks (what a 500 logged) if any, else the end of their logs."""
    start = logs.find("Traceback (most recent call last)")
    if start < 0:
        return logs[-limit:]
    return logs[max(0, logs.rfind("\n", 0, start - 400)) : start + limit]


@contextmanager
def servers(*urls: str, **env: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for url in urls:
            started.append(Server(url, **env))
        yield started
    finally:
        for server in started:
            server.stop()
            server.log.unlink(missing_ok=True)  # read inside the block (failure messages carry its tail)


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = orjson.dumps(body) if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        data = orjson.loads(raw) if raw else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


@dataclass
class Tally:
    """What the clients saw, shared by every tablet of a run."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    ok: int = 0
    unavailable: int = 0  # 503 with Retry-After
    connection_errors: int = 0
    failures: list[str] = field(default_factory=list)  # anything a client must never see

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


def send(
    ports: list[int],
    first: int,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    tally: Tally,
    deadline: float,
) -> tuple[Any, int]:
    """Send one request until it gets its 200, the way a tablet must: 503 -> wait Retry-After (capped for the
    test's time) and send the same request again; connection refused or lost -> the other server.
    Returns the answer and the index of the server that gave it."""
    index = first
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {path}: no 200 before the deadline")
        port = ports[index % len(ports)]
        tally.add(requests=1)
        try:
            status, response_headers, data = request(port, method, path, body, headers)
        except OSError as exc:
            # The servers are never stopped during a run: a lost connection is a server that failed.
            tally.add(connection_errors=1)
            tally.fail(f"{method} {path} on :{port}: connection error {exc!r}")
            index += 1
            time.sleep(0.2)
            continue
        if status == 200:
            tally.add(ok=1)
            return data, index % len(ports)
        if status == 503:
            retry_after = response_headers.get("retry-after")
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            if not retry_after or not retry_after.isdigit() or error.get("code") != "service_unavailable":
                tally.fail(f"{method} {path} on :{port}: 503 without Retry-After or error shape: {data}")
            tally.add(unavailable=1)
            # A real tablet waits Retry-After seconds; the test waits at most 0.5 s of it, then
            # tries the other server (a tablet configured with two addresses).
            time.sleep(min(float(retry_after or 1), 0.5))
            index += 1
            continue
        tally.fail(f"{method} {path} on :{port}: {status} {str(data)[:300]}")
        raise AssertionError(f"{method} {path}: {status} {str(data)[:300]}")


def wait_for_same_position(urls: list[str], timeout: float = 120) -> None:
    """Until every node has committed the same last write set (then their tables may be compared)."""
    engines = [create_engine(url) for url in urls]
    try:
        deadline = time.monotonic() + timeout
        while True:
            seen = []
            for engine in engines:
                with engine.connect() as conn:
                    row = conn.execute(text("SHOW STATUS LIKE 'wsrep_last_committed'")).one()
                    seen.append(int(row[1]))
            if len(set(seen)) == 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the nodes did not reach the same position: {seen}")
            time.sleep(0.5)
    finally:
        for engine in engines:
            engine.dispose()


def table_checksums(url: str) -> dict[str, int]:
    """CHECKSUM TABLE of every table of the database at `url` (the same data gives the same figures)."""
    engine: Engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = [row[0] for row in conn.execute(text("SHOW TABLES"))]
            result = {}
            for name in names:
                row = conn.execute(text(f"CHECKSUM TABLE `{name}`")).one()
                result[name] = int(row[1] or 0)
            return result
    finally:
        engine.dispose()
