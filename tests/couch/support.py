"""The Node side of the CouchDB tests: where the npm packages are, and a server subprocess with demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_modules() -> Path:
    """The installed packages; a missing install fails the test (never skips): run the install script."""
    path = NODE_DIR / "node_modules"
    if not (path / "pouchdb" / "package.json").exists() or not (path / "pouchdb-adapter-memory").exists():
        pytest.fail(f"the PouchDB packages are not installed: run bash {NODE_DIR / 'install.sh'}")
    return path
