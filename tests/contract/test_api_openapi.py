"""The OpenAPI document is complete and true: every route is in it, every path in it is a route, and what it
says about auth, parameters, bodies and errors is what the edge does."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from domain.api import ADMIN, PUBLIC, Ctx, Endpoint, PageQuery, Router
from domain.errors import ERROR_STATUS
from domain.wire import Command, Qty, Query
from server import all_endpoints
from sync.openapi import (
    SCHEMA_PATH,
    SWAGGER_PATH,
    documented,
    error_codes,
    openapi_document,
    openapi_path,
    swagger_assets,
    unknown_error_codes,
)

# Routes that are not API operations: the Swagger UI page and its assets; the CouchDB surface speaks its
# own protocol (and error shape) and is documented in the README, not here.
NOT_OPERATIONS = (SWAGGER_PATH, "/couchdb")


def app_operations(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the app serves, from the router itself."""
    by_path = {e.path: e for e in all_endpoints()}
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route):
            assert route.path.startswith(NOT_OPERATIONS), f"unexpected mount {route.path}"
            continue
        if route.path.startswith(NOT_OPERATIONS):
            continue
        methods = {e.method for e in all_endpoints() if e.path == route.path} or set(route.methods or ())
        assert route.path in by_path, f"{route.path} is served but not declared through a Router"
        found |= {(m, openapi_path(route.path)) for m in methods}
    return found


def test_every_route_is_in_the_schema_and_every_schema_path_is_a_route(app: Any, client: TestClient) -> None:
    doc = client.get(SCHEMA_PATH).json()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = app_operations(app)
    assert served - documented == set(), "routes missing from the schema"
    assert documented - served == set(), "schema operations that are no route"
    assert {"/api/v1/health", SCHEMA_PATH, "/api/v1/reports/stock/"} <= {p for _, p in documented}
    # and each documented operation answers something other than "no such route"
    for method, path in sorted(documented):
        if "{" not in path and method == "GET":
            assert client.get(path).status_code not in (404, 405), path


def test_the_served_document_is_the_generated_one_in_json_and_yaml(client: TestClient) -> None:
    as_json = client.get(SCHEMA_PATH)
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    as_yaml = client.get(SCHEMA_PATH, params={"format": "yaml"})
    assert as_yaml.status_code == 200 and as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json() == openapi_document(all_endpoints())
    assert as_json.json()["openapi"] == "3.1.0"
    assert client.get(SCHEMA_PATH, params={"format": "xml"}).status_code == 400


def test_security_follows_each_endpoints_auth() -> None:
    doc = openapi_document(all_endpoints())
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access token from login: `Authorization: Bearer <token>`.",
    }
    for e in all_endpoints():
        if not documented(e):
            continue
        op = doc["paths"][openapi_path(e.path)][e.method.lower()]
        if e.auth == PUBLIC:
            assert op["security"] == [], e.path
            assert "not_authenticated" not in _codes(op), e.path
        else:
            assert op["security"] == [{"bearerAuth": []}], e.path
            assert "not_authenticated" in _codes(op, "401"), e.path
        if e.auth == ADMIN:
            assert "forbidden" in _codes(op, "403"), e.path


def _codes(op: dict[str, Any], status: str | None = None) -> list[str]:
    out = []
    for code, response in op["responses"].items():
        if status is not None and code != status:
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        out += schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum", [])
    return out


def test_every_declared_error_code_is_known_and_documented_under_its_status() -> None:
    assert unknown_error_codes(all_endpoints()) == []
    doc = openapi_document(all_endpoints())
    for e in all_endpoints():
        if not documented(e):
            continue
        op = doc["paths"][openapi_path(e.path)][e.method.lower()]
        for code in e.errors:
            assert code in _codes(op, str(ERROR_STATUS[code])), f"{e.method} {e.path}: {code}"
    assert set(doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]) == set(
        ERROR_STATUS
    )


# -- the generator on a probe registry: bodies, queries, path parameters, pages ------------------------


class Line(Command):
    equipment: str
    qty: Qty


class Order(Command):
    customer: int
    lines: list[Line]


class Filters(PageQuery):
    customer: int | None = None
    status: list[str] = []


class Item(Query):
    id: int
    number: str


probe = Router("probe")


@probe.post("/api/v1/orders/", body=Order, response=Item, status=201, errors=("insufficient_stock",))
def create_order(ctx: Ctx) -> dict[str, Any]:
    """Create an order."""
    return {}


@probe.get("/api/v1/orders/", query=Filters, response=Item)
def list_orders(ctx: Ctx) -> dict[str, Any]:
    return {}


@probe.delete("/api/v1/orders/{id:int}/", status=204, auth=ADMIN)
def delete_order(ctx: Ctx) -> None:
    return None


@probe.get("/couchdb/{db}/", auth=PUBLIC)
def couch(ctx: Ctx) -> dict[str, Any]:
    return {}


def test_the_generator_on_a_probe_registry() -> None:
    doc = openapi_document(probe.endpoints)
    assert set(doc["paths"]) == {"/api/v1/orders/", "/api/v1/orders/{id}/"}, "CouchDB is not /api/"
    create = doc["paths"]["/api/v1/orders/"]["post"]
    body = create["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    assert set(body["content"]) == {"application/json", "application/msgpack"}
    schemas = doc["components"]["schemas"]
    assert schemas["Order"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}, "hoisted"
    assert schemas["Order"]["additionalProperties"] is False
    assert set(create["responses"]) == {"201", "400", "401", "406", "409", "413", "415", "500", "503"}
    assert _codes(create, "409") == ["insufficient_stock"]
    assert set(_codes(create, "400")) == {"malformed_body", "read_only_field", "validation_error"}
    listing = doc["paths"]["/api/v1/orders/"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert set(params) == {"page", "page_size", "customer", "status"}
    assert params["page_size"]["schema"]["maximum"] == 500
    assert params["customer"]["schema"] == {"type": "integer"}, "no JSON null in a query string"
    assert params["status"]["explode"] is True
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["required"] == ["count", "next", "previous", "results"]
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Item"}
    assert "Filters" not in schemas, "query models become parameters, not components"
    delete = doc["paths"]["/api/v1/orders/{id}/"]["delete"]
    assert delete["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    ]
    assert "content" not in delete["responses"]["204"]
    assert _codes(delete, "404") == ["not_found"] and _codes(delete, "403") == ["forbidden"]


def test_error_codes_of_a_public_get_without_parameters() -> None:
    bare = Endpoint("GET", "/api/v1/ping", lambda ctx: {}, auth=PUBLIC)
    assert error_codes(bare) == {
        401: ["invalid_token", "token_expired"],
        406: ["not_acceptable"],
        500: ["internal_error"],
        503: ["service_unavailable"],
    }


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"])
def test_swagger_ui_is_served_from_packaged_assets(client: TestClient, asset: str) -> None:
    page = client.get(SWAGGER_PATH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text, "no CDN: it must work offline"
    assert f"static/{asset}" in page.text and SCHEMA_PATH in page.text
    served = client.get(SWAGGER_PATH + "static/" + asset)
    assert served.status_code == 200
    assert served.content == (swagger_assets() / asset).read_bytes()
    bundle = (swagger_assets() / "swagger-ui-bundle.js").read_text()
    assert 'PACKAGE_VERSION:"5.' in bundle, "Swagger UI 5 renders OpenAPI 3.1"
