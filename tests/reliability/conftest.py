"""Fixtures of the reliability tests: one private MariaDB server for the tests that kill or restart things."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.processes import PrivateMariaDB
from tests.reliability.support import SUMMARY

PRIVATE_MARIADB_PORT = 3341


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    """A `mariadbd` of our own (port 3341, a temporary data folder): never the shared server on 3306."""
    server = PrivateMariaDB(Path(tmp_path_factory.mktemp("private-mariadb")), PRIVATE_MARIADB_PORT)
    server.install()
    server.start()
    yield server
    server.remove()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The figures of the fault tests: faults injected per phase with the answers, kills, restarts, requests."""
    if SUMMARY:
        terminalreporter.write_sep("-", "reliability figures")
        for line, times in sorted(SUMMARY.items()):
            terminalreporter.write_line(f"{line}" + (f" (x{times})" if times > 1 else ""))
