"""The edge: health, and every failure in the `{"error": {...}}` shape, on any endpoint."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from domain.api import PUBLIC, AppState, Ctx, Router, http_exception_handler, routes_for, server_error_handler
from domain.db import Database
from domain.settings import Settings
from domain.wire import Command, MoneyStr, Qty


def test_health(client: TestClient, settings: Settings) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == settings.dialect
    assert body["schema"] == "0001" or len(body["schema"]) >= 4


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json() if "json" in response.headers.get("content-type", "") else msgpack.unpackb(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing-here/"), 404, "not_found")
    err = assert_error(client.delete("/api/v1/health"), 405, "method_not_allowed")
    assert err["details"]["allowed"] == ["GET"]


class Echo(Command):
    name: str
    qty: Qty
    price: MoneyStr | None = None
    read_only = frozenset({"owner"})


probe = Router("probe")


@probe.post("/probe/echo", auth=PUBLIC, body=Echo)
def echo(ctx: Ctx) -> dict[str, Any]:
    return {"name": ctx.body.name, "qty": ctx.body.qty}


@probe.get("/probe/fail", auth=PUBLIC)
def fail(ctx: Ctx) -> dict[str, Any]:
    raise RuntimeError("a bug")


@pytest.fixture
def probe_client(settings: Settings, db: Database) -> TestClient:
    app = Starlette(
        routes=routes_for(probe.endpoints, AppState(settings, db)),
        exception_handlers={HTTPException: http_exception_handler, Exception: server_error_handler},
    )
    return TestClient(app, raise_server_exceptions=False)


def test_bodies_json_and_msgpack(probe_client: TestClient) -> None:
    ok = probe_client.post("/probe/echo", json={"name": "a", "qty": 2})
    assert ok.status_code == 200 and ok.json() == {"name": "a", "qty": 2}
    packed = probe_client.post(
        "/probe/echo",
        content=msgpack.packb({"name": "b", "qty": 3}),
        headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )
    assert packed.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(packed.content) == {"name": "b", "qty": 3}


def test_bad_bodies(probe_client: TestClient) -> None:
    post = probe_client.post
    assert_error(post("/probe/echo", content=b"{nope"), 400, "malformed_body")
    assert_error(post("/probe/echo", content=b"", headers={"Content-Type": "application/json"}), 400, "malformed_body")
    assert_error(
        post("/probe/echo", content=b"x", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"
    )
    err = assert_error(post("/probe/echo", json={"name": "a", "qty": 2, "colour": "red"}), 400, "validation_error")
    assert err["details"]["field"] == "colour"
    err = assert_error(post("/probe/echo", json={"name": "a", "qty": 2, "owner": 5}), 400, "read_only_field")
    assert err["details"]["field"] == "owner"
    err = assert_error(post("/probe/echo", json={"name": "a", "qty": 0}), 400, "validation_error")
    assert err["details"]["field"] == "qty"
    err = assert_error(post("/probe/echo", json={"name": "a", "qty": 1, "price": 12.5}), 400, "validation_error")
    assert err["details"]["field"] == "price"
    err = assert_error(post("/probe/echo", json={"name": "a", "qty": True}), 400, "validation_error")
    big = b'{"name": "' + b"a" * (5 * 1024 * 1024) + b'", "qty": 1}'
    assert_error(post("/probe/echo", content=big), 413, "payload_too_large")
    assert_error(post("/probe/echo", content=b"{}", headers={"Accept": "text/html"}), 406, "not_acceptable")


def test_a_bug_is_a_500_in_the_error_shape(probe_client: TestClient) -> None:
    assert_error(probe_client.get("/probe/fail"), 500, "internal_error")
