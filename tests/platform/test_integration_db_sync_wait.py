"""`LPG_DB_SYNC_WAIT`: the server's connections to a Galera node wait for the cluster before reading.

-1 (default) sets `wsrep_sync_wait=1` on a node where `wsrep_on` is ON and leaves every other server alone;
0 never sets it; 1..15 sets that mask. What it buys (read-your-writes across nodes) is tested in
tests/reliability/test_galera_read_your_writes.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from domain.db import Database
from domain.errors import ConfigurationError
from domain.settings import Settings
from tests.conftest import GALERA_URLS
from tests.conftest import test_settings as settings_for


def session_sync_wait(url: str, **overrides: object) -> tuple[str, int]:
    db = Database(settings_for(url, **overrides))
    try:
        with db.engine.connect() as conn:
            wsrep_on = conn.execute(text("SHOW VARIABLES LIKE 'wsrep_on'")).one()[1]
            value = int(conn.execute(text("SELECT @@session.wsrep_sync_wait")).scalar_one())
        return str(wsrep_on).upper(), value
    finally:
        db.dispose()


@pytest.mark.parametrize("value", ["-2", "16", "x"])
def test_a_sync_wait_outside_minus_one_to_fifteen_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="LPG_DB_SYNC_WAIT"):
        Settings.from_env({"LPG_DATABASE_URL": "sqlite:///x.db", "LPG_DB_SYNC_WAIT": value, "LPG_SECRET_KEY": "k" * 40})


def test_the_default_is_auto() -> None:
    assert Settings.from_env({"LPG_DATABASE_URL": "sqlite:///x.db", "LPG_SECRET_KEY": "k" * 40}).db_sync_wait == -1


@pytest.mark.mysql_only
def test_auto_sets_the_wait_only_on_a_galera_node(database_url: str) -> None:
    wsrep_on, value = session_sync_wait(database_url)
    assert value == (1 if wsrep_on == "ON" else 0)


@pytest.mark.mysql_only
def test_an_explicit_mask_is_set_and_zero_leaves_the_server_default(database_url: str) -> None:
    assert session_sync_wait(database_url, db_sync_wait=3)[1] == 3
    assert session_sync_wait(database_url, db_sync_wait=0)[1] == 0


@pytest.mark.galera
@pytest.mark.mysql_only
def test_every_node_of_the_cluster_gets_the_wait() -> None:
    assert [session_sync_wait(url) for url in GALERA_URLS] == [("ON", 1)] * 3
