"""The Node suite (tests/couch/node/suite.test.js): stock PouchDB 9 replicating with a real server process.

The server runs as `uvicorn server:create_app_from_env` on a free port of 127.0.0.1 against this test's
database (SQLite or MariaDB) with the demo data; `node --test` runs the suite; each failing Node test is
reported by name with its error.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from domain.db import Database
from tests.conftest import SECRET
from tests.couch.support import NODE_DIR, node_modules
from tests.support.pull_support import ServerProcess


def test_stock_pouchdb_replicates_both_ways(demo: Database, database_url: str, tmp_path: Path) -> None:
    node_modules()
    server = ServerProcess(database_url, SECRET, str(tmp_path / "server.log"))
    try:
        server.wait_ready(timeout=180)
        out = subprocess.run(
            ["node", "--test", "--test-reporter=tap", "suite.test.js"],
            cwd=NODE_DIR,
            env={**os.environ, "LPG_URL": server.url},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.stop()
    failing = re.findall(r"^not ok \d+ - (.+)$", out.stdout, re.M)
    passed = re.findall(r"^ok \d+ - (.+)$", out.stdout, re.M)
    assert out.returncode == 0 and not failing, (
        f"failing Node tests: {failing}\n{out.stdout[-6000:]}\n{out.stderr[-2000:]}\n"
        f"server log: {(tmp_path / 'server.log').read_text()[-3000:]}"
    )
    assert len(passed) >= 8, out.stdout[-3000:]
