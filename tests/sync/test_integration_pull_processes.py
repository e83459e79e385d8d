"""Pull across processes: no gaps under concurrent writers (MariaDB), longpoll woken by another process's
commit, and streams that neither hold a database connection while they wait nor outlive their client."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from sqlalchemy import select

from domain.db import Database
from domain.feed.models import FeedEntry
from domain.settings import Settings
from tests.conftest import SECRET, bearer
from tests.support.pull_support import ServerProcess, create_owned, touch_owned, update_customer

URL = "/api/v1/sync/changes"
WRITE_SECONDS = 10.0


def start_servers(settings: Settings, tmp_path: Path, count: int, *extra: str, pool: int = 8) -> list[ServerProcess]:
    servers = [
        ServerProcess(settings.database_url, SECRET, str(tmp_path / f"server{n}.log"), *extra, pool=pool)
        for n in range(count)
    ]
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@pytest.fixture
def two_servers(demo: Database, settings: Settings, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers = start_servers(settings, tmp_path, 2)
    yield servers
    for server in servers:
        server.stop()


def writers(db: Database, stop: threading.Event, errors: list[BaseException], count: int = 4) -> list[threading.Thread]:
    """Business-shaped writers: customer updates (locked rows, a pause before the commit), new and updated
    transactions and meter readings of both drivers."""

    def run(seed: int) -> None:
        rnd = random.Random(seed)
        mine: list[tuple[str, int]] = []
        try:
            while not stop.is_set():
                roll = rnd.random()
                if roll < 0.4:
                    update_customer(db, rnd.randint(1, 5), delay=rnd.random() * 0.004)
                elif roll < 0.7 or not mine:
                    entity = rnd.choice(["transaction", "meter_reading", "distribution"])
                    mine.append((entity, create_owned(db, entity, rnd.choice([2, 3]))))
                else:
                    touch_owned(db, *rnd.choice(mine))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,), daemon=True) for seed in range(count)]
    for thread in threads:
        thread.start()
    return threads


class Follower:
    """A client that always pulls from the last `last_seq` it was given, in small pages."""

    def __init__(self, get: Any, seed: int) -> None:
        self.get = get
        self.rnd = random.Random(seed)
        self.since = 0
        self.previous = 0
        self.seen: dict[tuple[str, int], int] = {}
        self.pages = 0

    def step(self) -> dict[str, Any]:
        page = self.get(self.since, self.rnd.randint(2, 6))
        for result in page["results"]:
            assert result["seq"] > self.previous, "a seq went backwards or repeated"
            assert result["seq"] > self.since
            self.previous = result["seq"]
            self.seen[(result["entity"], result["id"])] = result["version"]
        assert page["last_seq"] >= self.since, "last_seq went backwards"
        if page["results"]:
            assert page["last_seq"] >= page["results"][-1]["seq"]
        self.since = page["last_seq"]
        self.pages += 1
        return page

    def drain(self) -> None:
        while self.step()["results"]:
            pass


def final_versions(db: Database, scope_user: int | None = None) -> dict[tuple[str, int], int]:
    def q(s: Any) -> dict[tuple[str, int], int]:
        stmt = select(FeedEntry.entity, FeedEntry.entity_id, FeedEntry.version)
        if scope_user is not None:
            stmt = stmt.where(FeedEntry.scope.in_([0, scope_user]))
        return {(e, i): v for e, i, v in s.execute(stmt)}

    return db.read(q)


def business_versions(db: Database) -> dict[tuple[str, int], int]:
    from domain.catalog.models import Customer
    from domain.logistics.models import Distribution
    from domain.sales.models import MeterReading, Transaction

    def q(s: Any) -> dict[tuple[str, int], int]:
        out = {}
        for entity, model in (
            ("customer", Customer),
            ("transaction", Transaction),
            ("meter_reading", MeterReading),
            ("distribution", Distribution),
        ):
            out.update({(entity, i): v for i, v in s.execute(select(model.id, model.version))})
        return out

    return db.read(q)


def run_followers(db: Database, followers: list[Follower]) -> None:
    stop, errors = threading.Event(), []
    threads = writers(db, stop, errors)
    deadline = time.monotonic() + WRITE_SECONDS
    try:
        while time.monotonic() < deadline:
            for follower in followers:
                follower.step()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    for follower in followers:
        follower.drain()
        assert follower.pages > 50, "the reader should have followed the writers closely"


@pytest.mark.mysql_only
@pytest.mark.slow
def test_no_gaps_reader_in_process_over_http_while_writer_threads_commit(
    demo: Database, client: Any, admin_headers: dict[str, str]
) -> None:
    def get(since: int, limit: int) -> dict[str, Any]:
        r = client.get(URL, params={"since": since, "limit": limit}, headers=admin_headers)
        assert r.status_code == 200, r.text
        return orjson.loads(r.content)

    follower = Follower(get, 1)
    run_followers(demo, [follower])
    final = final_versions(demo)
    assert follower.seen == final
    business = business_versions(demo)
    assert {k: v for k, v in follower.seen.items() if k in business} == business
    assert len(final) > 100


@pytest.mark.mysql_only
@pytest.mark.slow
def test_no_gaps_with_two_server_processes_admin_and_driver_readers_alternating(
    demo: Database, settings: Settings, two_servers: list[ServerProcess]
) -> None:
    clients = [httpx.Client(base_url=s.url, timeout=30) for s in two_servers]

    def getter(headers: dict[str, str]) -> Any:
        turn = [0]

        def get(since: int, limit: int) -> dict[str, Any]:
            turn[0] += 1
            r = clients[turn[0] % 2].get(URL, params={"since": since, "limit": limit}, headers=headers)
            assert r.status_code == 200, r.text
            return orjson.loads(r.content)

        return get

    admin, driver = Follower(getter(bearer(settings, 1)), 2), Follower(getter(bearer(settings, 2)), 3)
    try:
        run_followers(demo, [admin, driver])
    finally:
        for c in clients:
            c.close()
    assert admin.seen == final_versions(demo)
    assert driver.seen == final_versions(demo, scope_user=2)
    assert sum(1 for k in driver.seen if k[0] != "customer") > 10


# -- longpoll woken by another process ------------------------------------------------------------------


@pytest.fixture
def one_server(demo: Database, settings: Settings, tmp_path: Path) -> Iterator[ServerProcess]:
    # A pool of 1 (+1 overflow): streams that held a connection while waiting would starve everybody.
    [server] = start_servers(settings, tmp_path, 1, "--limit-concurrency", "12", pool=1)
    yield server
    server.stop()


def test_longpoll_wakes_within_a_second_of_a_commit_by_another_process_and_times_out_otherwise(
    demo: Database, settings: Settings, one_server: ServerProcess
) -> None:
    headers = bearer(settings, 1)
    with httpx.Client(base_url=one_server.url, timeout=30) as http:
        head = http.get(URL, params={"limit": 10_000}, headers=headers).json()["last_seq"]
        t0 = time.monotonic()
        r = http.get(URL, params={"feed": "longpoll", "since": head, "timeout": 800}, headers=headers)
        assert 0.75 < time.monotonic() - t0 < 2.0
        assert r.json() == {"results": [], "last_seq": head, "pending": 0}
        committed: list[float] = []

        def later() -> None:
            time.sleep(0.7)
            update_customer(demo, 1)  # this test process is another process to the server
            committed.append(time.monotonic())

        writer = threading.Thread(target=later)
        writer.start()
        r = http.get(URL, params={"feed": "longpoll", "since": head, "timeout": 20_000}, headers=headers)
        woke = time.monotonic()
        writer.join()  # `committed` is stamped when the commit returned: at or after the commit itself
        assert [(x["entity"], x["id"]) for x in r.json()["results"]] == [("customer", 1)]
        assert woke - committed[0] < 1.0


def test_waiting_streams_hold_no_connection_and_end_when_their_client_hangs_up(
    demo: Database, settings: Settings, one_server: ServerProcess
) -> None:
    headers = bearer(settings, 2)
    head = httpx.get(one_server.url + URL, params={"limit": 10_000}, headers=headers).json()["last_seq"]
    port = one_server.port
    for _round in range(3):  # 3 x 8 streams through a server that takes 12 requests at a time
        sockets = []
        for n in range(8):
            mode = "feed=continuous&heartbeat=100" if n % 2 else "feed=longpoll"
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                f"GET {URL}?since={head}&timeout=60000&{mode} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {headers['Authorization']}\r\n\r\n".encode()
            )
            sockets.append((n, sock))
        for n, sock in sockets:
            if n % 2:  # continuous: the status line at once, then heartbeats
                sock.settimeout(5)
                received = b""
                while b"\r\n\r\n" not in received:
                    received += sock.recv(4096)
                assert received.startswith(b"HTTP/1.1 200")
        # While 8 wait, the pool of 2 connections still serves normal pulls at once.
        t0 = time.monotonic()
        for _ in range(5):
            assert httpx.get(one_server.url + URL, params={"since": head}, headers=headers).status_code == 200
        assert time.monotonic() - t0 < 5  # 5 pulls; blocked on a pool held by waiters, each would wait 30 s
        for _n, sock in sockets:
            sock.close()
        time.sleep(0.6)
    # Had the abandoned streams kept running (60 s timeout), uvicorn would refuse with 503 by now.
    r = httpx.get(one_server.url + URL, params={"since": head}, headers=headers)
    assert r.status_code == 200
