"""The SQLite database (with its -wal and -shm files) and the generated secret-key file are created 0600,
even under a permissive umask: they hold password hashes and the token signing key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from alembic import command
from domain.db import Database
from domain.schema import alembic_config, upgrade
from domain.settings import Settings


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most systems use: files 0644, readable by every local user
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_server_creates_its_database_wal_shm_and_secret_0600(tmp_path: Path, open_umask: None) -> None:
    url = f"sqlite:///{tmp_path}/lpg.db"
    settings = Settings.from_env({"LPG_DATABASE_URL": url})  # no key given: one is generated beside the db
    db = Database(settings)
    try:
        upgrade(db.engine)
        db.run(lambda uow: uow.session.execute(text("SELECT count(*) FROM users")).scalar_one())
        files = [tmp_path / name for name in ("lpg.db", "lpg.db-wal", "lpg.db-shm", "lpg.db.secret")]
        assert all(path.exists() for path in files), sorted(p.name for p in tmp_path.iterdir())
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    finally:
        db.dispose()


def test_migrating_a_new_database_from_the_command_line_creates_it_0600(tmp_path: Path, open_umask: None) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    config = alembic_config(url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
    assert mode(tmp_path / "cli.db") == 0o600


def test_an_existing_database_file_is_left_as_it_is(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "kept.db"
    path.touch(0o640)
    path.chmod(0o640)
    db = Database(Settings.from_env({"LPG_DATABASE_URL": f"sqlite:///{path}", "LPG_SECRET_KEY": "k" * 40}))
    try:
        upgrade(db.engine)
    finally:
        db.dispose()
    assert mode(path) == 0o640
