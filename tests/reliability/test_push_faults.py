"""Connection faults injected for real at each phase of a push, and a database that is not there.

A TCP proxy (tests/reliability/proxy.py) sits between the server and MariaDB and cuts the server's
connection when it sees the statement of a phase: the device row lock, the stock row lock, the ledger's late
lock (feed, audit and document-number counters), the writes under it and the COMMIT (one compound statement
on MariaDB, domain/ledger.py: cut before it reaches the database, or after: the answer is lost and the
outcome unknown). Each phase once (the server's retry
gets through) and always (the attempts run out). The answer is only ever 200 or 503 with Retry-After; the
same batch sent again is applied or answered as duplicates; every change is applied exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from domain.audit.verify import verify_chain
from domain.db import Database
from domain.dbfaults import UNKNOWN_BATCH, DatabaseUnavailable
from domain.feed.reader import Scope, fetch_current, fetch_page
from domain.settings import Settings
from server import create_app
from tests.conftest import MYSQL_URL, bearer, user_id
from tests.conftest import test_settings as settings_for
from tests.reliability.proxy import FaultProxy
from tests.reliability.support import SUMMARY, assert_applied_once, gap_free, sales_batch, state

PROXY_PORT = 18110
DOWN_PORT = 3349  # nothing listens here: a database that is down
# The unit's last round trip: its locked writes, then COMMIT, in one compound statement.
COMMIT = r"\x03BEGIN NOT ATOMIC\b.*;\nCOMMIT;\nEND\Z"
PHASES: dict[str, tuple[str, str, str | None]] = {
    "device_lock": (r"FROM devices\b.*FOR UPDATE", "before", None),
    "stock_lock": (r"FROM truck_stock\b.*FOR UPDATE", "before", None),
    # The late lock of a batch too big for the one-trip statement (LOCK_BATCH sales): the feed and audit
    # counters and the number series (TRX, INV) in one statement of its own.
    "ledger_counter_lock": (r"FROM counters\b.*IN \([^)]*'TRX-\d+'[^)]*'audit', 'feed'\).*FOR UPDATE", "before", None),
    # Everything written under the lock (the numbers, stored answers, feed, audit, counters): one compound
    # statement; for a small batch the lock itself is in it too.
    "ledger_writes": (r"BEGIN NOT ATOMIC\b.*UPDATE transactions SET number", "before", None),
    "commit_lost_before": (COMMIT, "before", None),
    "commit_answer_lost": (COMMIT, "after", None),
    # No phase after the commit: a push's last_seq is the seq its own ledger write reached (or read inside
    # its unit when it records nothing for the feed), so nothing is read after a push commits.
}


def proxied_url(port: int) -> str:
    """The test database's URL through the proxy (whatever port the database has: 3306, a Galera node's)."""
    return make_url(MYSQL_URL).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
def proxy(demo: Database) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(make_url(MYSQL_URL).port or 3306, PROXY_PORT)
    yield fault_proxy
    fault_proxy.close()


@pytest.fixture
def proxied(proxy: FaultProxy, settings: Settings) -> Iterator[tuple[Database, TestClient]]:
    through = settings_for(proxied_url(PROXY_PORT))
    database = Database(through)
    with TestClient(create_app(through, database), base_url="http://127.0.0.1") as client:
        yield database, client
    database.dispose()


def check_answer(response: Any) -> None:
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert int(response.headers["Retry-After"]) > 0
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "nothing was changed" not in error["message"]


@pytest.mark.mysql_only
@pytest.mark.parametrize("mode", ["once", "always"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_fault_at_each_phase_of_a_push(
    demo: Database,
    settings: Settings,
    proxy: FaultProxy,
    proxied: tuple[Database, TestClient],
    phase: str,
    mode: str,
) -> None:
    _, client = proxied
    headers = bearer(settings, user_id(demo, "driver1"))
    before = state(demo)
    per_batch = LOCK_BATCH if phase == "ledger_counter_lock" else 3
    envelope = {"device_id": f"tab-{phase}", "changes": sales_batch(phase, per_batch)}
    pattern, when, armed_by = PHASES[phase]
    times = 1 if mode == "once" else 50
    rule = proxy.add(pattern, when, times, armed_by=armed_by, same_connection=phase != "after_commit_last_seq")
    first = client.post("/api/v1/sync/push", json=envelope, headers=headers)
    proxy.clear()
    assert rule.hits >= 1, f"the fault at {phase} was not injected"
    check_answer(first)
    SUMMARY[f"{phase}/{mode}: {rule.hits} cut(s) -> {first.status_code}"] += 1
    if first.status_code == 503 and phase.startswith("commit"):
        assert first.json()["error"]["message"] == UNKNOWN_BATCH
    if mode == "once":
        assert first.status_code == 200, "one fault is absorbed by the server's own retry"
    if phase == "after_commit_last_seq":
        assert first.status_code == 200, "a committed batch is never turned into an error"
        assert first.json()["last_seq"] > 0
    again = client.post("/api/v1/sync/push", json=envelope, headers=headers)
    assert again.status_code == 200, again.text
    statuses = {r["status"] for r in again.json()["results"]}
    assert statuses <= {"applied", "duplicate"}
    if first.status_code == 200:
        assert statuses == {"duplicate"}
        assert again.json()["id_map"] == first.json()["id_map"], "the resend names the same records"
    assert_applied_once(demo, before, batches=1, per_batch=per_batch)


# A small push: its new rows (their ids tokens until then), the late lock, its numbers, its writes and
# COMMIT are one compound statement.
NEW_ROWS = r"(?:DECLARE lpg_i\d+ BIGINT;\n)*"
ONE_TRIP = r"\x03BEGIN NOT ATOMIC\n" + NEW_ROWS + r"DECLARE lpg_a\b.*;\nCOMMIT;\nEND\Z"
# The same for a sale: its numbers are given inside the statement (lpg_n0, ...).
ONE_TRIP_NUMBERS = r"\x03BEGIN NOT ATOMIC\n" + NEW_ROWS + r"DECLARE lpg_a\b.*\nDECLARE lpg_n0\b.*;\nCOMMIT;\nEND\Z"
# More feed rows than the one-trip statement takes: the late lock is a statement of its own.
LOCK_BATCH = 8
# A push's single new rows that name each other (a customer, its sale, the sale's invoice): one statement.
CHAIN = r"\x03BEGIN NOT ATOMIC\nDECLARE lpg_s0, lpg_s1\b"


def metered(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for change in changes:
        if change["op"] == "transaction.create":
            change["data"]["meter"] = {"reading": "10.00"}
    return changes


def one_customer(tag: str) -> list[dict[str, Any]]:
    return [{"client_temp_id": f"{tag}-c0", "op": "customer.create", "data": {"name": "One Trip", "address": "1 Rd"}}]


def check_one_customer(db: Database, before: dict[str, Any], again: dict[str, Any], tag: str) -> None:
    """The customer exists once, the feed has one row for it, the audit chain the database computed holds."""
    after = state(db)
    assert after["customers"] - before["customers"] == 1 and after["applied"] - before["applied"] == 1
    assert after["feed"] - before["feed"] == 1 and after["max_seq"] == before["max_seq"] + 1
    assert again["last_seq"] >= after["max_seq"]
    assert verify_chain(db).ok


def check_one_sale(db: Database, before: dict[str, Any], again: dict[str, Any], tag: str) -> None:
    """Everything exists once, and the invoice names its own sale and that sale's new customer."""
    assert_applied_once(db, before, batches=1, per_batch=1)
    answer = {r["client_temp_id"]: r for r in again["results"]}
    sale = answer[f"{tag}-s0"]
    with db.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT t.customer_id, i.transaction_id, i.customer_id, i.number FROM invoices i"
                " JOIN transactions t ON t.id = i.transaction_id WHERE t.id = :id"
            ),
            {"id": sale["id"]},
        ).one()
    assert row[0] == answer[f"{tag}-c0"]["id"] == row[2]
    assert row[1] == sale["id"] and row[3] == sale["related"]["invoice"]["number"]


# A sale to a site served before: its site row and the truck's rows locked by one statement.
JOINT_LOCK = r"FROM site_stock INNER JOIN truck_stock\b.*FOR UPDATE"


def one_sale_to_a_site_served_before(tag: str) -> list[dict[str, Any]]:
    sale = sales_batch(tag, 1)[1]
    sale["data"]["customer"] = 1  # the demo's customer 1, whose CYL9 site row the test creates first
    return [sale]


def check_one_sale_to_a_site_served_before(
    db: Database, before: dict[str, Any], again: dict[str, Any], tag: str
) -> None:
    """The sale, its invoice and its stock moves exist once."""
    after = state(db)
    assert after["transactions"] - before["transactions"] == 1 and after["invoices"] - before["invoices"] == 1
    assert before["cyl9_full"][1] - after["cyl9_full"][1] == 1, "truck stock moved other than once"
    assert gap_free(after["trx_numbers"]) and gap_free(after["inv_numbers"])
    with db.engine.connect() as conn:
        on_site = conn.execute(
            text("SELECT on_site FROM site_stock WHERE customer_id = 1 AND equipment_id = 1")
        ).scalar()
    assert on_site == 1, "site stock moved other than once"
    assert verify_chain(db).ok


# statement: (its pattern, the batch, what must hold after the resend)
OWN_STATEMENTS: dict[str, tuple[str, Callable[[str], list[dict[str, Any]]], Callable[..., None]]] = {
    # The late lock, the writes and the COMMIT of a 1-change customer push.
    "one_trip": (ONE_TRIP, one_customer, check_one_customer),
    # The same for a new customer's confirmed sale: the TRX and INV numbers given inside the statement.
    "one_trip_sale": (ONE_TRIP_NUMBERS, lambda tag: sales_batch(tag, 1), check_one_sale),
    # A sale and its invoice inserted together, ids passed on by LAST_INSERT_ID(), before the commit's
    # statement: the sale also reads the new customer's meter, an ORM object flushed first (`resolve_ids`).
    "chained_insert": (CHAIN, lambda tag: metered(sales_batch(tag, 1)), check_one_sale),
    # The site row and the truck's rows locked together (the site row exists: a site served before).
    "joint_stock_lock": (JOINT_LOCK, one_sale_to_a_site_served_before, check_one_sale_to_a_site_served_before),
}


@pytest.mark.mysql_only
@pytest.mark.parametrize("mode", ["once", "always"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("statement", list(OWN_STATEMENTS))
def test_a_fault_at_the_compound_statements_of_a_small_push(
    demo: Database,
    settings: Settings,
    proxy: FaultProxy,
    proxied: tuple[Database, TestClient],
    statement: str,
    when: str,
    mode: str,
) -> None:
    """The connection is cut before the statement reaches the server, or after it ran (its answer lost: for
    the one-trip statement committed, and the server cannot know; for the chained insert its rows are in a
    transaction that never commits). The push is answered 200 or 503 with Retry-After; the batch sent again
    is applied or answered as duplicates with the same ids; every change is applied exactly once."""
    _, client = proxied
    headers = bearer(settings, user_id(demo, "driver1"))
    if statement == "joint_stock_lock":
        with demo.engine.begin() as conn:
            conn.execute(text("INSERT INTO site_stock (customer_id, equipment_id, on_site, version, last_modified)"
                              " VALUES (1, 1, 0, 1, UTC_TIMESTAMP(6))"))  # fmt: skip
    before = state(demo)
    pattern, changes, check = OWN_STATEMENTS[statement]
    tag = f"{statement}-{when}-{mode}"
    envelope = {"device_id": f"tab-{statement}-{when}", "changes": changes(tag)}
    rule = proxy.add(pattern, when, 1 if mode == "once" else 50)
    first = client.post("/api/v1/sync/push", json=envelope, headers=headers)
    proxy.clear()
    assert rule.hits >= 1, "the fault was not injected"
    check_answer(first)
    SUMMARY[f"{statement}_{when}/{mode}: {rule.hits} cut(s) -> {first.status_code}"] += 1
    if mode == "once" or (statement.startswith("one_trip") and when == "after"):
        # One fault is absorbed by the server's own retry; after the one-trip statement's answer is lost the
        # retry finds the change committed (its idempotency record) and answers it without writing again.
        assert first.status_code == 200, first.text
    again = client.post("/api/v1/sync/push", json=envelope, headers=headers)
    assert again.status_code == 200, again.text
    statuses = {r["status"] for r in again.json()["results"]}
    if first.status_code == 200:
        assert statuses == {"duplicate"} and again.json()["id_map"] == first.json()["id_map"]
    else:
        assert statuses == {"applied"}
    check(demo, before, again.json(), tag)


def server_threads(db: Database, like: str) -> list[int]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID() AND info LIKE :like"
            ),
            {"like": like},
        ).all()
    return [row[0] for row in rows]


@pytest.mark.mysql_only
def test_kill_query_and_kill_connection_while_a_push_waits_on_a_stock_lock(demo: Database, settings: Settings) -> None:
    """The test holds truck 1's stock row; the push waits on it; `KILL QUERY` (1317), then `KILL CONNECTION`
    (a lost connection): the server runs the unit again each time, and succeeds once the lock is released."""
    server_db = Database(settings)
    client = TestClient(create_app(settings, server_db), base_url="http://127.0.0.1")
    headers = bearer(settings, user_id(demo, "driver1"))
    before = state(demo)
    envelope = {"device_id": "tab-kill", "changes": sales_batch("kill", 2)}
    answers: list[Any] = []
    holder = demo.engine.connect()
    holder.begin()
    holder.execute(text("SELECT full FROM truck_stock WHERE truck_id = 1 FOR UPDATE")).all()
    pusher = threading.Thread(
        target=lambda: answers.append(client.post("/api/v1/sync/push", json=envelope, headers=headers))
    )
    pusher.start()
    killed = []
    try:
        for kill in ("KILL QUERY", "KILL CONNECTION"):
            deadline = time.monotonic() + 20
            while not (waiting := server_threads(demo, "%FROM truck_stock%FOR UPDATE%")):
                assert time.monotonic() < deadline, "the push never waited on the stock lock"
                time.sleep(0.05)
            with demo.engine.connect() as killer:
                killer.exec_driver_sql(f"{kill} {waiting[0]}")
            killed.append(kill)
            time.sleep(0.2)
        deadline = time.monotonic() + 20
        while not server_threads(demo, "%FROM truck_stock%FOR UPDATE%"):
            assert time.monotonic() < deadline, "the push did not come back after the kills"
            time.sleep(0.05)
    finally:
        holder.rollback()
        holder.close()
        pusher.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    assert server_db.retries >= 2
    SUMMARY[f"kill_query+kill_connection on a stock lock -> {answers[0].status_code}"] += 1
    assert_applied_once(demo, before, batches=1, per_batch=2)
    server_db.dispose()


@pytest.mark.mysql_only
def test_dead_pooled_connections_are_replaced_without_pre_ping(demo: Database, settings: Settings) -> None:
    """No pre-ping: every pooled connection killed behind the server's back costs one failed statement,
    after which the pool is invalidated and the request is served on a fresh connection."""
    server_db = Database(settings)
    assert server_db.engine.pool._pre_ping is False  # type: ignore[attr-defined]
    headers = bearer(settings, user_id(demo, "driver1"))
    with TestClient(create_app(settings, server_db), base_url="http://127.0.0.1") as client:
        for _ in range(3):
            assert client.get("/api/v1/customers/", headers=headers).status_code == 200
        victims = pooled_thread_ids(server_db)
        assert victims, "the server's pool holds connections"
        with demo.engine.connect() as killer:
            for thread_id in victims:
                killer.exec_driver_sql(f"KILL CONNECTION {thread_id}")
        for _ in range(5):
            response = client.get("/api/v1/customers/", headers=headers)
            assert response.status_code == 200, response.text
        push = client.post(
            "/api/v1/sync/push", json={"device_id": "tab-pool", "changes": sales_batch("pool", 1)}, headers=headers
        )
        assert push.status_code == 200
    assert server_db.retries >= 1, "the dead connection was met and the unit retried"
    server_db.dispose()


def pooled_thread_ids(db: Database) -> list[int]:
    """The MariaDB thread ids of the connections `db`'s pool holds (only those: the test's own stay alive)."""
    held = []
    try:
        for _ in range(db.engine.pool.checkedin()):  # type: ignore[attr-defined]
            conn = db.engine.connect()
            held.append(conn)
        return [int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()) for conn in held]
    finally:
        for conn in held:
            conn.close()


def test_a_database_that_is_down_answers_503_with_retry_after(tmp_path: Any) -> None:
    """Nothing listens on the database's port: push, REST reads and health say 503 with Retry-After."""
    down = settings_for(f"mysql+pymysql://root@127.0.0.1:{DOWN_PORT}/lpg", db_retry_seconds=1.0)
    database = Database(down)
    headers = bearer(down, 2)
    with TestClient(create_app(down, database), base_url="http://127.0.0.1") as client:
        answers = {
            "health": client.get("/api/v1/health"),
            "read": client.get("/api/v1/customers/", headers=headers),
            "push": client.post(
                "/api/v1/sync/push", json={"device_id": "tab-down", "changes": sales_batch("down", 1)}, headers=headers
            ),
            "pull": client.get("/api/v1/sync/changes", headers=headers),
        }
    for name, response in answers.items():
        assert response.status_code == 503, (name, response.text)
        assert int(response.headers["Retry-After"]) >= 1, name
        error = response.json()["error"]
        assert error["code"] == "service_unavailable", name
        if name != "health":
            assert "send the same request again as it is" in error["message"]
    # The feed reader connects through the pool itself (the driver's own error): a fault, retried, then
    # unavailable, never the driver's error (a node lost between a pull's authentication and its read).
    with pytest.raises(DatabaseUnavailable):
        fetch_page(database, 0, 10, Scope(None, ()))
    with pytest.raises(DatabaseUnavailable):
        fetch_current(database)
    database.dispose()


def test_the_command_line_tools_report_a_database_that_is_down(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The replay and audit-verify commands say the database is unavailable (exit 3 / 2), no traceback."""
    from domain.audit import __main__ as audit_cli
    from reconcile import replay

    monkeypatch.setenv("LPG_DB_RETRY_SECONDS", "0.5")
    monkeypatch.setenv("LPG_SECRET_KEY", "x" * 40)
    url = f"mysql+pymysql://root@127.0.0.1:{DOWN_PORT}/lpg"
    queue = tmp_path / "queue.json"
    queue.write_text('{"changes": []}')
    assert replay.main([str(queue), "--device", "tab-1", "--database-url", url]) == 3
    assert "service_unavailable" in capsys.readouterr().out
    assert audit_cli.main(["verify", "--database-url", url, "--json"]) == 2
    assert "cannot read the audit log" in capsys.readouterr().err


PULL_PHASES = {  # the pull reads the feed through the driver directly, in a snapshot of its own
    "snapshot_start": r"START TRANSACTION WITH CONSISTENT SNAPSHOT",
    "page_read": r"FROM change_feed\b",
}


@pytest.mark.mysql_only
@pytest.mark.parametrize("mode", ["once", "always"])
@pytest.mark.parametrize("phase", list(PULL_PHASES))
def test_a_fault_while_a_pull_reads_is_a_retry_or_a_503(
    demo: Database,
    settings: Settings,
    proxy: FaultProxy,
    proxied: tuple[Database, TestClient],
    phase: str,
    mode: str,
) -> None:
    """A connection cut while `GET /sync/changes` reads: once, the server reads again (200, the same page
    as without the fault); always, 503 with Retry-After. Never a 500 (the driver's own error is made a
    database fault, and the broken connection is not handed out again)."""
    _, client = proxied
    headers = bearer(settings, user_id(demo, "admin"))
    expected = client.get("/api/v1/sync/changes?since=0&limit=50", headers=headers)
    assert expected.status_code == 200, expected.text
    rule = proxy.add(PULL_PHASES[phase], "before", 1 if mode == "once" else 50)
    first = client.get("/api/v1/sync/changes?since=0&limit=50", headers=headers)
    proxy.clear()
    assert rule.hits >= 1, f"the fault at {phase} was not injected"
    check_answer(first)
    if mode == "once":
        assert first.status_code == 200, "one fault is absorbed by the server's own retry"
        assert first.json()["results"] == expected.json()["results"]
    else:
        assert first.status_code == 503
    again = client.get("/api/v1/sync/changes?since=0&limit=50", headers=headers)
    assert again.status_code == 200 and again.json()["results"] == expected.json()["results"]
