"""`python -m reconcile.replay QUEUE --device ID [--dry-run]`: the same reconciler, from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import orjson
from sqlalchemy import func, select

from domain.accounts.policy import Actor
from domain.catalog.models import Customer
from domain.db import Database
from domain.settings import Settings
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.sync_support import table_fingerprint

ROOT = Path(__file__).resolve().parents[2]


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LPG_SECRET_KEY": settings.secret_key, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "reconcile.replay", *args, "--database-url", settings.database_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def customers(db: Database) -> int:
    return db.read(lambda s: s.execute(select(func.count()).select_from(Customer)).scalar_one())


def test_replay_cli_dry_run_then_real_then_again(demo: Database, settings: Settings, tmp_path: Path) -> None:
    apply_batch(demo, Actor(2, "driver1", "driver"), parse_envelope({"device_id": "tab-cli", "changes": []}))
    queue = [
        {
            "client_temp_id": f"q-{i}",
            "op": "customer.create",
            "data": {"name": f"Queue Customer {i}", "address": "5 Queue Rd"},
        }
        for i in range(620)
    ]
    queue.append({"client_temp_id": "q-bad", "op": "customer.fly", "data": {}})
    as_json = tmp_path / "queue.json"
    as_json.write_bytes(orjson.dumps({"changes": queue}))
    as_msgpack = tmp_path / "queue.msgpack"
    as_msgpack.write_bytes(msgpack.packb(queue))
    start = customers(demo)
    before = table_fingerprint(demo)

    dry = run_cli(settings, str(as_json), "--device", "tab-cli", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "applied" in dry.stdout and "620" in dry.stdout
    assert "rejected: validation_error" in dry.stdout
    assert table_fingerprint(demo) == before

    real = run_cli(settings, str(as_msgpack), "--device", "tab-cli")
    assert real.returncode == 0, real.stderr
    assert customers(demo) == start + 620

    again = run_cli(settings, str(as_json), "--device", "tab-cli")
    assert again.returncode == 0, again.stderr
    assert "duplicate" in again.stdout and customers(demo) == start + 620


def test_replay_cli_unknown_device(demo: Database, settings: Settings, tmp_path: Path) -> None:
    queue = tmp_path / "q.json"
    queue.write_text("[]")
    result = run_cli(settings, str(queue), "--device", "nobody")
    assert result.returncode == 2 and "not_found" in result.stdout
