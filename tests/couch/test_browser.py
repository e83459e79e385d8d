"""Browser PouchDB (its browser build, in Debian's Chromium through Playwright) replicating cross-origin.

The page comes from this test's own HTTP server on another port (another origin), listed in
`LPG_CORS_ORIGINS` of the server process; PouchDB sends credentials (HTTP Basic), so this passes only when
the preflight and the answers carry `Access-Control-Allow-Credentials: true` for that origin. The page pulls
`lpg` into IndexedDB and pushes a one-change queue, then pulls that change's result.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.db import Database
from tests.conftest import SECRET
from tests.couch.support import node_modules
from tests.support.pull_support import ServerProcess

CHROMIUM = "/usr/bin/chromium"

PAGE = """<!doctype html><meta charset="utf-8"><title>lpg pouch</title>
<script src="/pouchdb.min.js"></script>
<script>
window.run = async (server) => {
  const auth = {username: 'driver1', password: 'driver1-lpg-2026'};
  const local = new PouchDB('lpg-' + Date.now());
  const pulled = await local.replicate.from(new PouchDB(server + '/couchdb/lpg', {auth, skip_setup: true}));
  const queue = new PouchDB('queue-' + Date.now());
  await queue.put({_id: 'b-1', op: 'customer.create', data: {name: 'Browser Eating House', address: '1 Web Rd'}});
  const pushed = await queue.replicate.to(new PouchDB(server + '/couchdb/queue-browser-1', {auth, skip_setup: true}));
  const results = new PouchDB('results-' + Date.now());
  await results.replicate.from(new PouchDB(server + '/couchdb/results-browser-1', {auth, skip_setup: true}));
  const result = await results.get('b-1');
  return {docs: (await local.allDocs()).rows.length, read: pulled.docs_read, written: pushed.docs_written,
          failures: pushed.doc_write_failures, status: result.status, entity: result.entity};
};
</script>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def page_server() -> Iterator[str]:
    bundle = node_modules() / "pouchdb" / "dist" / "pouchdb.min.js"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (
                (bundle.read_bytes(), "application/javascript")
                if self.path == "/pouchdb.min.js"
                else (PAGE.encode(), "text/html; charset=utf-8")
            )
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_browser_pouchdb_replicates_from_another_origin(
    demo: Database, database_url: str, tmp_path: Path, page_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("LPG_CORS_ORIGINS", page_server)
    server = ServerProcess(database_url, SECRET, str(tmp_path / "server.log"))
    try:
        server.wait_ready(timeout=180)
        api = server.url.replace("127.0.0.1", "localhost")  # another host than the page: cross-origin
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(page_server + "/")
                result = page.evaluate("(server) => window.run(server)", api)
            finally:
                browser.close()
    finally:
        server.stop()
    assert result["docs"] > 10 and result["read"] == result["docs"], (result, errors)
    assert result == {**result, "written": 1, "failures": 0, "status": "applied", "entity": "customer"}, errors
