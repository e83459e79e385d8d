"""One suite, two engines. Without `LPG_TEST_MYSQL_URL` every test runs on SQLite (a fresh copy of a
migrated file per test); with it, on MariaDB/MySQL (the migrated database emptied before each test).

Tests live by context, `tests/<context>/test_<kind>_*.py` (kind: unit, integration, contract, property,
also a marker: `pytest -m unit`); modules they share are in tests/support/.

Tests marked `mysql_only` need MariaDB; without it they are deselected (not skipped) and listed at the
end. Tests marked `galera` need a 3-node Galera cluster (`LPG_TEST_GALERA_URLS`, the node URLs comma-separated,
node 1 first, with `LPG_TEST_MYSQL_URL` = node 1; `.ci/galera` starts one); without it they are deselected
the same way. With `LPG_FAIL_ON_SKIP=1` (CI) a single skipped test fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from domain.accounts.tokens import ACCESS, encode_token
from domain.db import Database
from domain.schema import upgrade
from domain.settings import Settings

MYSQL_URL = os.environ.get("LPG_TEST_MYSQL_URL", "").strip()
ENGINE = "mysql" if MYSQL_URL else "sqlite"
GALERA_URLS = [url.strip() for url in os.environ.get("LPG_TEST_GALERA_URLS", "").split(",") if url.strip()]
SECRET = "test-secret-key-" + "x" * 40
NOT_EMPTIED = {"alembic_version"}
_deselected_mysql: list[str] = []
_deselected_galera: list[str] = []

# No timed tests: Hypothesis's per-example deadline (200 ms) fails correct code on a busy machine, so it is
# off for every property test (speed is measured in tests/bench/, never asserted here).
hypothesis_settings.register_profile("lpg", deadline=None)
hypothesis_settings.load_profile("lpg")
KINDS = ("unit", "integration", "contract", "property")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mysql_only: needs MariaDB/MySQL (LPG_TEST_MYSQL_URL)")
    config.addinivalue_line("markers", "slow: takes seconds (concurrency, soak)")
    config.addinivalue_line("markers", "galera: needs a 3-node Galera cluster (LPG_TEST_GALERA_URLS)")
    for kind in KINDS:
        config.addinivalue_line("markers", f"{kind}: a {kind} test (tests/<context>/test_{kind}_*.py)")
    if GALERA_URLS and (len(GALERA_URLS) < 3 or _node(GALERA_URLS[0]) != _node(MYSQL_URL)):
        raise pytest.UsageError(
            "LPG_TEST_GALERA_URLS needs 3 node URLs, the first one the database of LPG_TEST_MYSQL_URL"
        )


def _node(url: str) -> tuple[Any, ...]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url) if url else None
    return (parsed.host, parsed.port, parsed.database) if parsed else ()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # tests/<context>/test_<kind>_*.py: `pytest -m property` runs one kind everywhere
        kind = item.path.name.removeprefix("test_").split("_", 1)[0]
        if kind in KINDS:
            item.add_marker(kind)
    keep, drop = [], []
    for item in items:
        if ENGINE != "mysql" and item.get_closest_marker("mysql_only"):
            _deselected_mysql.append(item.nodeid)
            drop.append(item)
        elif not GALERA_URLS and item.get_closest_marker("galera"):
            _deselected_galera.append(item.nodeid)
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    header = f"lpg-sync test engine: {ENGINE}" + (f" ({MYSQL_URL})" if MYSQL_URL else "")
    return header + (f"; Galera nodes: {', '.join(GALERA_URLS)}" if GALERA_URLS else "")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _deselected_mysql:
        terminalreporter.write_line(
            f"{len(_deselected_mysql)} MariaDB-only tests deselected: set LPG_TEST_MYSQL_URL to run them"
        )
    if _deselected_galera:
        terminalreporter.write_line(
            f"{len(_deselected_galera)} Galera tests deselected: set LPG_TEST_GALERA_URLS (see .ci/galera) to run them"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("LPG_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"LPG_FAIL_ON_SKIP: {len(skipped)} test(s) skipped; CI counts that as a failure", red=True)
        session.exitstatus = 1


def test_settings(database_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "secret_key": SECRET,
        "env": "test",
        "validate_responses": True,
        "db_pool_size": 12,
        "sqlite_synchronous": "NORMAL",
    }
    base.update(overrides)
    return Settings.from_env({"LPG_DATABASE_URL": database_url}, **base)


# -- the migrated template --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def mysql_engine() -> Iterator[Engine]:
    if not MYSQL_URL:
        pytest.fail("this fixture needs LPG_TEST_MYSQL_URL")
    engine = create_engine(MYSQL_URL)
    reset_mysql_schema(engine)
    upgrade(engine)
    yield engine
    engine.dispose()


def reset_mysql_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for name in inspect(conn).get_table_names():
            conn.exec_driver_sql(f"DROP TABLE `{name}`")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


def empty_mysql(engine: Engine) -> None:
    """Bring the migrated database back to just-migrated state, ids from 1 again (faster than migrating).

    TRUNCATE is DDL: the audit log's append-only triggers do not fire, which is what a test reset needs
    (the application's own MariaDB user has no TRUNCATE grant on it)."""
    with engine.begin() as conn:
        auto = dict(
            conn.exec_driver_sql(
                "SELECT table_name, auto_increment FROM information_schema.tables WHERE table_schema = DATABASE()"
            ).all()
        )
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for name in inspect(conn).get_table_names():
            if name in NOT_EMPTIED:
                continue
            dirty = (auto.get(name) or 1) > 1 or conn.exec_driver_sql(f"SELECT 1 FROM `{name}` LIMIT 1").first()
            if dirty:
                conn.exec_driver_sql(f"TRUNCATE TABLE `{name}`")
        conn.execute(text("INSERT INTO counters (name, value) VALUES ('audit', 0), ('feed', 0)"))
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database for this test."""
    if ENGINE == "mysql":
        engine = request.getfixturevalue("mysql_engine")
        empty_mysql(engine)
        return MYSQL_URL
    template = request.getfixturevalue("sqlite_template")
    target = tmp_path / "lpg.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return test_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


@pytest.fixture
def demo(db: Database) -> Database:
    from domain.demo import load_demo

    assert load_demo(db)
    return db


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    from server import create_app

    return create_app(settings, db)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def bearer(settings: Settings, user_id: int) -> dict[str, str]:
    """An Authorization header for a user, as login would issue it."""
    token, _ = encode_token(settings, user_id, ACCESS)
    return {"Authorization": f"Bearer {token}"}


def user_id(db: Database, username: str) -> int:
    from sqlalchemy import select

    from domain.accounts.models import User

    return db.read(lambda s: s.execute(select(User.id).where(User.username == username)).scalar_one())


@pytest.fixture
def admin_headers(demo: Database, settings: Settings) -> dict[str, str]:
    return bearer(settings, user_id(demo, "admin"))


@pytest.fixture
def driver_headers(demo: Database, settings: Settings) -> dict[str, str]:
    return bearer(settings, user_id(demo, "driver1"))


@pytest.fixture
def other_driver_headers(demo: Database, settings: Settings) -> dict[str, str]:
    return bearer(settings, user_id(demo, "driver2"))
