"""Alembic builds the schema from empty on both engines, and the models match it exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from domain.schema import alembic_config, head_revision, upgrade
from sync.models import metadata
from tests.conftest import MYSQL_URL, reset_mysql_schema


def assert_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        names = set(inspect(conn).get_table_names())
    assert set(metadata.tables) <= names


def test_sqlite_upgrade_from_empty_matches_models(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    assert_matches_models(engine)
    with engine.connect() as conn:
        triggers = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"audit_log_no_update", "audit_log_no_delete", "audit_log_no_replace"} <= triggers
    engine.dispose()


def test_sqlite_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    from alembic import command

    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    config = alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert_matches_models(engine)


@pytest.fixture
def scratch_mysql() -> Iterator[Engine]:
    url = make_url(MYSQL_URL)
    name = f"{url.database}_migrations"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    engine = create_engine(url.set(database=name))
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    admin.dispose()


@pytest.mark.mysql_only
def test_mariadb_upgrade_from_empty_matches_models(scratch_mysql: Engine) -> None:
    reset_mysql_schema(scratch_mysql)
    upgrade(scratch_mysql)
    assert_matches_models(scratch_mysql)
    with scratch_mysql.connect() as conn:
        triggers = {r[0] for r in conn.exec_driver_sql("SHOW TRIGGERS")}
    assert {"audit_log_no_update", "audit_log_no_delete"} <= triggers
