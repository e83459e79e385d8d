"""By hand: a real PouchDB (7.3, node, memory adapter) replicates from /couchdb/lpg as driver1 over HTTP Basic.

    (cd /tmp/pouch && npm install pouchdb-server@4.2.0)   # brings pouchdb-core, -adapter-http/-memory, -replication
    /work/venv/bin/python tests/bench/pouch_replicate.py --pouch-dir /tmp/pouch

Checks: every document in driver1's scope arrives (and no other driver's transaction), the replicator's
checkpoint is stored through `_local`, and a second replication resumes from it and reads nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.db import Database
from domain.demo import load_demo
from domain.schema import upgrade
from domain.settings import Settings
from tests.support.pull_support import ServerProcess, create_owned

SCRIPT = """
const m = (n) => require(process.argv[2] + '/node_modules/' + n);
const PouchDB = m('pouchdb-core').plugin(m('pouchdb-adapter-http')).plugin(m('pouchdb-adapter-memory'))
  .plugin(m('pouchdb-replication'));
(async () => {
  const remote = new PouchDB(process.argv[3] + '/couchdb/lpg', {auth: {username: 'driver1', password: 'driver1-lpg-2026'}, skip_setup: true});
  const local = new PouchDB('local', {adapter: 'memory'});
  const first = await local.replicate.from(remote, {batch_size: 50});
  const ids = (await local.allDocs()).rows.map(r => r.id);
  const second = await local.replicate.from(remote);
  console.log(JSON.stringify({ok: first.ok, errors: first.errors, ids, second_read: second.docs_read}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pouch-dir", default="/tmp/pouch")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    url, secret = f"sqlite:///{tmp}/rep.db", "replicate-" + "s" * 40
    upgrade(create_engine(url))
    db = Database(Settings.from_env({"LPG_DATABASE_URL": url}, secret_key=secret, env="test"))
    load_demo(db)
    mine = [create_owned(db, "transaction", 2) for _ in range(3)]
    theirs = [create_owned(db, "transaction", 3) for _ in range(2)]
    server = ServerProcess(url, secret, f"{tmp}/server.log")
    try:
        server.wait_ready()
        Path(tmp, "rep.js").write_text(SCRIPT)
        out = subprocess.run(
            ["node", f"{tmp}/rep.js", args.pouch_dir, server.url], capture_output=True, text=True, timeout=120
        )
        if out.returncode:
            sys.exit(f"replication failed: {out.stderr[-2000:]}")
        result = json.loads(out.stdout)
        trx = sorted(int(i.split(":")[1]) for i in result["ids"] if i.startswith("transaction:"))
        assert result["ok"] and not result["errors"], result
        assert trx == mine and not set(theirs) & set(trx), trx
        assert result["second_read"] == 0, result
        print(f"ok: {len(result['ids'])} documents replicated, driver1's transactions {trx}, resumed from _local")
    finally:
        server.stop()
        db.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
