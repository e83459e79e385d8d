"""Fixtures of the reliability tests: one private MariaDB server for the tests that kill or restart things."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.processes import PrivateMariaDB

PRIVATE_MARIADB_PORT = 3341


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    """A `mariadbd` of our own (port 3341, a temporary data folder): never the shared server on 3306."""
    server = PrivateMariaDB(Path(tmp_path_factory.mktemp("private-mariadb")), PRIVATE_MARIADB_PORT)
    server.install()
    server.start()
    yield server
    server.remove()
