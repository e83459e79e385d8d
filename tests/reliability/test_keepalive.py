"""An idle keep-alive connection stays open longer than a client's pool keeps it (httpx and others: 5 s).

With uvicorn's default of 5 s, a pooled connection could be reused by a client at the moment the server
closed it, and the request was reset: seen as `Connection reset by peer` in the two-server soak. The server
now keeps idle connections for `LPG_KEEPALIVE_SECONDS` (75 by default), so the client's side closes first."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from domain.settings import Settings
from tests.conftest import SECRET
from tests.reliability.processes import Server

PORT = 18160


def _get(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/api/v1/health")
    response = conn.getresponse()
    response.read()
    return response.status


def test_an_idle_connection_outlives_a_clients_pool_expiry(settings: Settings, tmp_path: Path) -> None:
    server = Server(settings.database_url, PORT, SECRET, tmp_path / "server.log")
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        assert _get(conn) == 200
        first = conn.sock
        time.sleep(7)  # idle past uvicorn's default 5 s
        assert _get(conn) == 200
        assert conn.sock is first, "the same connection answered again"
        conn.close()
    finally:
        server.stop()


def test_the_keepalive_setting_is_what_the_server_uses(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LPG_KEEPALIVE_SECONDS", "1")
    server = Server(settings.database_url, PORT + 1, SECRET, tmp_path / "server.log")
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT + 1, timeout=30)
        assert _get(conn) == 200
        time.sleep(3)  # the server closed the idle connection after 1 s
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _get(conn)
        conn.close()
    finally:
        server.stop()
