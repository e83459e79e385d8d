"""Tampering that bypasses the database (root, triggers dropped) is found, and the first broken entry named.

The log: the demo's 40 entries (one unit) and then 10 units of 3 entries each, so ids 1..70, head 70.
Every scenario runs through the API, the in-process CLI, and (for two) the real `python -m domain.audit`.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from domain.audit import __main__ as cli
from domain.audit.schemas import VerifyOut
from domain.audit.verify import verify_chain
from domain.db import Database
from tests.support.audit_support import ROOT, as_root, entries, rehash, row_of, set_head, write_entries

LAST = 70


@dataclass(frozen=True)
class Scenario:
    name: str
    tamper: Callable[[Connection], None]
    first_broken: int
    reason: str
    checked: int  # entries found intact before the first broken one


def change_context(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_log SET context = :c WHERE id = 45"), {"c": '{"after":{"full":999}}'})


def change_context_and_rehash(conn: Connection) -> None:
    """The forger recomputes entry 45's hash: entry 46 no longer links to it."""
    change_context(conn)
    rehash(conn, 45, row_of(conn, 44)["hash"])


def change_actor(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_log SET user_id = 3 WHERE id = 12"))


def change_time(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_log SET device_id = 'elsewhere' WHERE id = 70"))


def delete_middle(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_log WHERE id = 50"))


def delete_first(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_log WHERE id = 1"))


def delete_middle_and_relink(conn: Connection) -> None:
    """Entry 50 deleted and every later entry re-chained, head included: only the id gap remains."""
    conn.execute(text("DELETE FROM audit_log WHERE id = 50"))
    prev = row_of(conn, 49)["hash"]
    for entry_id in range(51, LAST + 1):
        prev = rehash(conn, entry_id, prev)
    set_head(conn, LAST, prev)


def reorder(conn: Connection) -> None:
    """Entries 55 and 56 swap places (each keeps its content and hash, under the other's id)."""
    a, b = row_of(conn, 55), row_of(conn, 56)
    conn.execute(text("DELETE FROM audit_log WHERE id IN (55, 56)"))
    table_insert(conn, {**b, "id": 55})
    table_insert(conn, {**a, "id": 56})


def delete_last(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": LAST})


def delete_last_three(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_log WHERE id > :id"), {"id": LAST - 3})


def append_forged(conn: Connection) -> None:
    """An entry appended behind the application's back, correctly chained, without moving the head."""
    last = row_of(conn, LAST)
    table_insert(conn, {**last, "id": LAST + 1, "prev_hash": last["hash"]})
    rehash(conn, LAST + 1, last["hash"])


def move_head(conn: Connection) -> None:
    conn.execute(text("UPDATE counters SET head = :h WHERE name = 'audit'"), {"h": "f" * 64})


def table_insert(conn: Connection, row: dict[str, object]) -> None:
    from domain.audit.models import AuditEntry

    conn.execute(AuditEntry.__table__.insert().values(**row))


SCENARIOS = [
    Scenario("changed_context", change_context, 45, "hash_mismatch", 44),
    Scenario("changed_context_rehashed", change_context_and_rehash, 46, "prev_hash_mismatch", 45),
    Scenario("changed_actor_in_the_demo_unit", change_actor, 12, "hash_mismatch", 11),
    Scenario("changed_last_entry", change_time, LAST, "hash_mismatch", LAST - 1),
    Scenario("deleted_middle_entry", delete_middle, 51, "prev_hash_mismatch", 49),
    Scenario("deleted_first_entry", delete_first, 2, "prev_hash_mismatch", 0),
    Scenario("deleted_middle_entry_relinked", delete_middle_and_relink, 51, "id_gap", 49),
    Scenario("reordered_entries", reorder, 55, "prev_hash_mismatch", 54),
    Scenario("deleted_last_entry", delete_last, LAST, "head_mismatch", LAST - 1),
    Scenario("deleted_last_three_entries", delete_last_three, LAST - 2, "head_mismatch", LAST - 3),
    Scenario("appended_behind_the_head", append_forged, LAST + 1, "head_mismatch", LAST),
    Scenario("head_rewritten", move_head, LAST, "head_mismatch", LAST),
]


@pytest.fixture
def chained(demo: Database) -> Database:
    write_entries(demo, 10, per_transaction=3)
    assert [e.id for e in entries(demo)] == list(range(1, LAST + 1))
    return demo


def test_an_untouched_log_verifies_everywhere(
    chained: Database, client: TestClient, admin_headers: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {"ok": True, "checked": LAST, "first_broken": None}
    assert verify_chain(chained).as_dict() == expected
    assert verify_chain(chained, page_size=7).as_dict() == expected
    response = client.get("/api/v1/audit/verify/", headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == expected
    assert cli.main(["verify", "--database-url", database_url(chained), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == expected


def test_an_empty_log_is_intact(db: Database) -> None:
    assert verify_chain(db).as_dict() == {"ok": True, "checked": 0, "first_broken": None}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("page_size", [2000, 4])
def test_tampering_is_found_and_the_first_broken_entry_named(
    chained: Database,
    client: TestClient,
    admin_headers: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    scenario: Scenario,
    page_size: int,
) -> None:
    with as_root(chained) as conn:
        scenario.tamper(conn)
    verdict = verify_chain(chained, page_size=page_size)
    broken = {"id": scenario.first_broken, "reason": scenario.reason}
    assert verdict.as_dict()["first_broken"] == broken
    assert verdict.ok is False
    assert verdict.checked == scenario.checked
    response = client.get("/api/v1/audit/verify/", headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == {"ok": False, "checked": verdict.checked, "first_broken": broken}
    VerifyOut.model_validate(response.json())
    url = database_url(chained)
    assert cli.main(["verify", "--database-url", url, "--json", "--page-size", str(page_size)]) == 1
    assert orjson.loads(capsys.readouterr().out)["first_broken"] == broken
    # the triggers are back after the tampering: the log is append-only again
    with pytest.raises(Exception, match="append-only"), chained.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id = 3")


def test_a_forger_who_rewrites_every_hash_and_the_head_is_not_detected(chained: Database) -> None:
    """The documented limit: the chain proves nothing against someone who recomputes all of it."""
    with as_root(chained) as conn:
        change_context(conn)
        prev = row_of(conn, 44)["hash"]
        for entry_id in range(45, LAST + 1):
            prev = rehash(conn, entry_id, prev)
        set_head(conn, LAST, prev)
    assert verify_chain(chained).ok is True


def test_the_command_line_tool_exits_0_then_1_naming_the_entry(chained: Database) -> None:
    url = database_url(chained)
    command = [sys.executable, "-m", "domain.audit", "verify", "--database-url", url]
    ok = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert f"{LAST} entries checked" in ok.stdout
    with as_root(chained) as conn:
        delete_middle(conn)
    broken = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert broken.returncode == 1, broken.stderr
    assert "first broken entry id 51 (prev_hash_mismatch)" in broken.stdout


def test_the_progress_bar_follows_the_pages(chained: Database, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, int]] = []
    verify_chain(chained, page_size=16, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(16, LAST), (32, LAST), (48, LAST), (64, LAST), (LAST, LAST)]
    assert cli.main(["verify", "--database-url", database_url(chained), "--page-size", "16"]) == 0
    assert f"ok: {LAST} entries checked" in capsys.readouterr().out


def test_entries_committed_during_verification_neither_break_nor_join_it(chained: Database) -> None:
    """The head is read first; a unit committed between two pages is outside this verification."""
    calls = 0

    def commit_meanwhile(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            write_entries(chained, 2, per_transaction=2)

    verdict = verify_chain(chained, page_size=10, progress=commit_meanwhile)
    assert verdict.as_dict() == {"ok": True, "checked": LAST, "first_broken": None}
    assert verify_chain(chained).checked == LAST + 4


def database_url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def test_an_anchor_noted_outside_catches_a_full_rewrite(chained: Database, capsys: pytest.CaptureFixture[str]) -> None:
    """The mitigation of the limit above: a head hash noted earlier no longer matches after the rewrite."""
    url = database_url(chained)
    assert cli.main(["verify", "--database-url", url, "--no-progress"]) == 0
    noted = capsys.readouterr().out.split("head: ")[1].split()[0]
    assert noted.startswith(f"{LAST}:")
    assert cli.main(["verify", "--database-url", url, "--anchor", noted, "--json"]) == 0
    capsys.readouterr()
    with as_root(chained) as conn:
        change_context(conn)
        prev = row_of(conn, 44)["hash"]
        for entry_id in range(45, LAST + 1):
            prev = rehash(conn, entry_id, prev)
        set_head(conn, LAST, prev)
    assert cli.main(["verify", "--database-url", url, "--anchor", noted, "--json"]) == 1
    assert orjson.loads(capsys.readouterr().out)["first_broken"] == {"id": LAST, "reason": "anchor_mismatch"}
    # a forger who also moves the head back below the anchored entry is caught as well
    with as_root(chained) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id > 60"))
        set_head(conn, 60, row_of(conn, 60)["hash"])
    assert cli.main(["verify", "--database-url", url, "--anchor", noted, "--json"]) == 1
    assert orjson.loads(capsys.readouterr().out)["first_broken"] == {"id": LAST, "reason": "anchor_mismatch"}
    with pytest.raises(SystemExit):
        cli.main(["verify", "--database-url", url, "--anchor", "70:abc"])


def test_the_command_line_tool_exits_2_when_there_is_no_log_to_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert cli.main(["verify", "--database-url", f"sqlite:///{missing}", "--no-progress"]) == 2
    assert "no such database file" in capsys.readouterr().err
    assert not missing.exists(), "verification must not create a database"
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert cli.main(["verify", "--database-url", f"sqlite:///{empty}", "--no-progress"]) == 2
    assert "no such table" in capsys.readouterr().err
