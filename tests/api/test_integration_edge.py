"""Request ids, the access log and CORS, on the real app."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from domain.api import PUBLIC, Ctx, PageQuery, Router
from domain.db import Database
from domain.settings import Settings
from server import create_app
from sync.edge import RequestIdFilter, request_id_var


def test_a_request_id_is_made_up_when_absent_and_echoed_when_sane(client: TestClient) -> None:
    first, second = client.get("/api/v1/health"), client.get("/api/v1/health")
    assert len(first.headers["x-request-id"]) == 32 and first.headers["x-request-id"] != second.headers["x-request-id"]
    mine = client.get("/api/v1/health", headers={"X-Request-ID": "tab-017:42"})
    assert mine.headers["x-request-id"] == "tab-017:42"
    evil = client.get("/api/v1/health", headers={"X-Request-ID": 'bad id" injected=1'})
    assert evil.headers["x-request-id"] != 'bad id" injected=1' and len(evil.headers["x-request-id"]) == 32


def test_every_response_carries_it_errors_unknown_routes_and_assets_included(client: TestClient) -> None:
    for response in (
        client.get("/api/v1/reports/stock/"),  # 401
        client.get("/api/v1/nothing/"),  # 404 from the router
        client.delete("/api/v1/health"),  # 405
        client.get("/api/schema/swagger-ui/static/swagger-ui.css"),
    ):
        assert response.headers.get("x-request-id"), response.status_code


def test_a_bug_is_a_500_with_the_request_id_and_cors_headers(
    settings: Settings, db: Database, monkeypatch: Any
) -> None:
    import server

    boom = Router("boom")

    @boom.get("/api/v1/boom", auth=PUBLIC)
    def explode(ctx: Ctx) -> dict[str, Any]:
        raise RuntimeError("a bug")

    original = server.routers
    monkeypatch.setattr(server, "routers", lambda: [*original(), boom])
    app = create_app(settings.with_(cors_origins=("https://office.example",)), db)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom", headers={"Origin": "https://office.example", "X-Request-ID": "r-1"})
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] == "r-1"
    assert response.headers["access-control-allow-origin"] == "https://office.example"


def test_the_access_log_has_one_structured_line_a_request(
    client: TestClient, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="lpg.access"):
        client.get("/api/v1/reports/sync/", headers={**admin_headers, "X-Request-ID": "req-a"})
        client.get("/api/v1/reports/sync/", headers={"X-Request-ID": "req-b"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lpg.access"]
    assert [(x["request_id"], x["status"], x["user_id"]) for x in lines] == [("req-a", 200, 1), ("req-b", 401, None)]
    for line in lines:
        assert line["method"] == "GET" and line["path"] == "/api/v1/reports/sync/"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_log_lines_written_during_a_request_carry_its_id(
    settings: Settings, db: Database, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import server

    talk = Router("talk")

    @talk.get("/api/v1/talk", auth=PUBLIC)
    def talker(ctx: Ctx) -> dict[str, Any]:
        logging.getLogger("lpg.test").warning("inside the handler")  # runs in the thread pool
        return {}

    original = server.routers
    monkeypatch.setattr(server, "routers", lambda: [*original(), talk])
    caplog.handler.addFilter(RequestIdFilter())
    with TestClient(create_app(settings, db)) as client, caplog.at_level(logging.INFO):
        client.get("/api/v1/talk", headers={"X-Request-ID": "trace-9"})
    inside = [r for r in caplog.records if r.name == "lpg.test"]
    assert [r.request_id for r in inside] == ["trace-9"]  # type: ignore[attr-defined]
    assert request_id_var.get() == "-", "the id does not leak out of the request"


def test_cors_allows_only_the_configured_origins(settings: Settings, db: Database) -> None:
    app = create_app(settings.with_(cors_origins=("https://tablet.example", "https://office.example")), db)
    with TestClient(app) as client:
        preflight = client.options(
            "/api/v1/reports/stock/",
            headers={
                "Origin": "https://tablet.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization, X-Request-ID",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://tablet.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert preflight.headers.get("x-request-id")
        simple = client.get("/api/v1/health", headers={"Origin": "https://office.example"})
        assert simple.headers["access-control-allow-origin"] == "https://office.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        foreign = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
        refused = client.options(
            "/api/v1/health", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert refused.status_code == 400


def test_without_configured_origins_no_cross_origin_access(client: TestClient) -> None:
    response = client.get("/api/v1/health", headers={"Origin": "https://tablet.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


class Answer(BaseModel):
    id: int
    number: str


def test_responses_outside_their_model_fail_loudly_when_validation_is_on(
    settings: Settings, db: Database, monkeypatch: Any
) -> None:
    import server

    shapes = Router("shapes")

    @shapes.get("/api/v1/good", auth=PUBLIC, response=Answer)
    def good(ctx: Ctx) -> dict[str, Any]:
        return {"id": 1, "number": "INV-2026-000001"}

    @shapes.get("/api/v1/bad", auth=PUBLIC, response=Answer)
    def bad(ctx: Ctx) -> dict[str, Any]:
        return {"id": 1, "number": 7}

    @shapes.get("/api/v1/bad-page", auth=PUBLIC, response=Answer, query=PageQuery)
    def bad_page(ctx: Ctx) -> dict[str, Any]:
        return {"count": 1, "next": None, "previous": None, "results": [{"id": "one"}]}

    original = server.routers
    monkeypatch.setattr(server, "routers", lambda: [*original(), shapes])
    assert settings.validate_responses, "the test settings turn it on"
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        assert client.get("/api/v1/good").status_code == 200
        assert client.get("/api/v1/bad").status_code == 500
        assert client.get("/api/v1/bad-page").status_code == 500
    with TestClient(create_app(settings.with_(validate_responses=False), db)) as client:
        assert client.get("/api/v1/bad").status_code == 200
