"""The OpenAPI 3.1 document, generated from the endpoint registry and the very pydantic classes that validate
requests and shape responses, so the contract cannot drift from the code; and the offline Swagger UI.

Rules the generator follows (each endpoint's declaration in its context's `api.py` is the only input):
- path parameters come from the route template (`{id:int}` -> an integer parameter `id`);
- query parameters from the endpoint's `Query` model, the request body from its `Command` (JSON or
  MessagePack); `$defs` are hoisted into `components/schemas`;
- the success response from `response=` (a pydantic model, any type pydantic can describe, or a ready JSON
  schema); a list endpoint (a `PageQuery`) whose `response` is an item model gets the page envelope
  `{count, next, previous, results: [item]}`; without `response=` a generic object (or page) is documented;
- error responses from `errors=` plus what the edge itself can answer: 400 (validation, malformed body),
  401 (bearer scheme), 403 (admin only), 404 (a path parameter names nothing), 406, 413, 415, 500. Each
  lists its codes, and its schema admits exactly those codes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from domain import codec
from domain.api import ADMIN, PUBLIC, Ctx, Endpoint, PageQuery, Router
from domain.errors import ERROR_STATUS
from domain.wire import Query

log = logging.getLogger("lpg.openapi")

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
SCHEMA_PATH = "/api/schema/"
SWAGGER_PATH = "/api/schema/swagger-ui/"
REF = "#/components/schemas/{model}"
BEARER = "bearerAuth"
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-z]+))?\}")
_PARAM_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number"},
    "uuid": {"format": "uuid"},
}
BODY_METHODS = {"POST", "PUT", "PATCH"}

STATUS_TEXT = {
    400: "The request is not valid",
    401: "Not logged in, or the token is invalid or expired",
    403: "The caller's role may not do this",
    404: "No such record (or not the caller's)",
    405: "Method not allowed",
    406: "The Accept header names no format the server speaks",
    409: "The record's state or the stock does not allow this",
    413: "The body exceeds 5 MiB",
    415: "The Content-Type is neither JSON nor MessagePack",
    429: "Too many attempts",
    500: "The server failed (a defect)",
    502: "An upstream service failed",
    503: "The database is unavailable or too busy: send the same request again after Retry-After seconds",
}


def openapi_path(template: str) -> str:
    """`/api/v1/distributions/{id:int}/` -> `/api/v1/distributions/{id}/`."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", template)


def path_parameters(template: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(_PARAM_TYPES.get(kind or "str", {"type": "string"})),
        }
        for name, kind in _PARAM.findall(template)
    ]


def documented(endpoint: Endpoint) -> bool:
    """Everything under `/api/` is documented (the CouchDB surface has its own protocol and error shape)."""
    return endpoint.path.startswith("/api/")


def operation_id(endpoint: Endpoint) -> str:
    return f"{endpoint.tag}_{endpoint.name}" if endpoint.tag else endpoint.name


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _is_page_query(model: type[Query] | None) -> bool:
    return model is not None and issubclass(model, PageQuery)


def _is_page_model(model: type[BaseModel]) -> bool:
    return {"count", "next", "previous", "results"} <= set(model.model_fields)


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    """The DRF-style page every list answers with."""
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "next": {"type": ["string", "null"], "format": "uri"},
            "previous": {"type": ["string", "null"], "format": "uri"},
            "results": {"type": "array", "items": item},
        },
    }


def error_codes(endpoint: Endpoint) -> dict[int, list[str]]:
    """Every error code the endpoint can answer, by HTTP status: its own `errors=` and the edge's."""
    codes: set[str] = set(endpoint.errors)
    codes.add("not_acceptable")
    codes.add("internal_error")
    codes.add("service_unavailable")  # a database fault: 503 with Retry-After (domain.dbfaults)
    takes_body = endpoint.body is not None or endpoint.raw_body or endpoint.method in BODY_METHODS
    if endpoint.query is not None or endpoint.body is not None:
        codes.add("validation_error")
    if takes_body:
        codes.update({"malformed_body", "payload_too_large", "unsupported_media_type", "validation_error"})
    if endpoint.body is not None:
        codes.add("read_only_field")
    # A malformed or expired token is refused everywhere, also on public endpoints that were sent one.
    codes.update({"invalid_token", "token_expired"})
    if endpoint.auth != PUBLIC:
        codes.add("not_authenticated")
    if endpoint.auth == ADMIN:
        codes.add("forbidden")
    if _PARAM.search(endpoint.path):
        codes.add("not_found")
    by_status: dict[int, list[str]] = {}
    for code in sorted(codes):
        status = ERROR_STATUS.get(code)
        if status is None:
            log.warning("%s %s declares the unknown error code %r", endpoint.method, endpoint.path, code)
            status = 400
        by_status.setdefault(status, []).append(code)
    return dict(sorted(by_status.items()))


def unknown_error_codes(endpoints: Iterable[Endpoint]) -> list[str]:
    """Declared codes that `domain/errors.py` does not know (a test keeps this list empty)."""
    return sorted({f"{e.method} {e.path}: {c}" for e in endpoints for c in e.errors if c not in ERROR_STATUS})


def error_schema(codes: Sequence[str]) -> dict[str, Any]:
    return {
        "allOf": [{"$ref": REF.format(model="Error")}],
        "properties": {"error": {"properties": {"code": {"enum": list(codes)}}}},
    }


ERROR_COMPONENT = {
    "type": "object",
    "description": "Every failure, anywhere in /api/v1/: a stable snake_case code, a sentence, details.",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "enum": sorted(ERROR_STATUS)},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

REQUEST_ID_HEADER = {
    "description": "The request's id: the client's own X-Request-ID, or one the server made up.",
    "schema": {"type": "string"},
}


class _Schemas:
    """Collects the pydantic models, then renders them all at once so `$defs` names are consistent."""

    def __init__(self) -> None:
        self.models: list[tuple[type[BaseModel], str]] = []

    def add(self, model: type[BaseModel], mode: str) -> tuple[type[BaseModel], str]:
        key = (model, mode)
        if key not in self.models:
            self.models.append(key)
        return key

    def render(self) -> tuple[dict[tuple[type[BaseModel], str], dict[str, Any]], dict[str, Any]]:
        if not self.models:
            return {}, {}
        refs, top = models_json_schema(self.models, ref_template=REF)  # type: ignore[arg-type]
        return refs, top.get("$defs", {})  # type: ignore[return-value]


def _adapter_schema(value: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for a non-model response type (`list[Model]`, `dict[str, Any]`...)."""
    schema = TypeAdapter(value).json_schema(mode="serialization", ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    return schema


def openapi_document(endpoints: Iterable[Endpoint], title: str = "lpg-sync API") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented endpoint, in registry order."""
    chosen = [e for e in endpoints if documented(e)]
    schemas = _Schemas()
    for e in chosen:
        if e.body is not None:
            schemas.add(e.body, "validation")
        if e.query is not None:
            schemas.add(e.query, "validation")
        if _is_model(e.response):
            schemas.add(e.response, "serialization")
    refs, defs = schemas.render()
    defs = dict(defs)
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    for e in chosen:
        if e.tag and e.tag not in tags:
            tags.append(e.tag)
        paths.setdefault(openapi_path(e.path), {})[e.method.lower()] = _operation(e, refs, defs)
    # Query models are flattened into parameters; they need no component of their own.
    for e in chosen:
        if e.query is not None:
            ref = refs.get((e.query, "validation"), {}).get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if name and not any(_refers_to(other, name) for other in defs.values()):
                defs.pop(name, None)
    defs["Error"] = ERROR_COMPONENT
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": API_VERSION,
            "description": (
                "The offline-first sync server for LPG field operations. Log in, then press **Authorize** "
                "and paste the access token. Bodies are JSON or MessagePack (`Content-Type` / `Accept`); "
                "money, rates and readings are decimal strings; times are RFC 3339. Every error has the "
                'shape `{"error": {"code", "message", "details"}}`.'
            ),
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(defs.items())),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The access token from login: `Authorization: Bearer <token>`.",
                }
            },
            "headers": {"X-Request-ID": REQUEST_ID_HEADER},
        },
    }


def _refers_to(schema: Any, name: str) -> bool:
    target = REF.format(model=name)
    if isinstance(schema, dict):
        return any(v == target if k == "$ref" else _refers_to(v, name) for k, v in schema.items())
    if isinstance(schema, list):
        return any(_refers_to(item, name) for item in schema)
    return False


def _operation(
    e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]], defs: dict[str, Any]
) -> dict[str, Any]:
    doc = (e.handler.__doc__ or "").strip()
    op: dict[str, Any] = {
        "operationId": operation_id(e),
        "summary": e.summary or e.name.replace("_", " "),
        "tags": [e.tag] if e.tag else [],
    }
    if doc and doc != e.summary:
        op["description"] = doc
    params = path_parameters(e.path) + _query_parameters(e, refs, defs)
    if params:
        op["parameters"] = params
    op["security"] = [] if e.auth == PUBLIC else [{BEARER: []}]
    if e.auth == ADMIN:
        op["description"] = (op.get("description", "") + "\n\nAdmin only.").strip()
    body = _request_body(e, refs)
    if body is not None:
        op["requestBody"] = body
    op["responses"] = _responses(e, refs, defs)
    return op


def _query_parameters(
    e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]], defs: dict[str, Any]
) -> list[dict[str, Any]]:
    if e.query is None:
        return []
    schema = refs[(e.query, "validation")]
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        if prop.get("type") == "array":
            param.update(style="form", explode=True)
        out.append(param)
    return out


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string, never JSON null: `anyOf [X, null]` becomes `X`."""
    schema = dict(schema)
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del schema["anyOf"]
        schema = {**rest[0], **schema} if len(rest) == 1 else {**schema, "anyOf": rest}
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _request_body(e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any] | None:
    if e.body is not None:
        schema: dict[str, Any] = refs[(e.body, "validation")]
    elif e.raw_body:
        schema = {"type": "object"}
    else:
        return None
    return {
        "required": not e.body_optional,
        "content": {codec.JSON: {"schema": schema}, codec.MSGPACK: {"schema": schema}},
    }


def _success_schema(e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]], defs: dict[str, Any]) -> Any:
    response = e.response
    if response is None:
        item: dict[str, Any] = {"type": "object"}
        return page_schema(item) if _is_page_query(e.query) else item
    if _is_model(response):
        schema = refs[(response, "serialization")]
        if _is_page_query(e.query) and not _is_page_model(response):
            return page_schema(schema)
        return schema
    if isinstance(response, dict):
        return response
    return _adapter_schema(response, defs)


def _responses(
    e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]], defs: dict[str, Any]
) -> dict[str, Any]:
    headers = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    responses: dict[str, Any] = {}
    if e.status == 204:
        responses["204"] = {"description": "Done; no body", "headers": headers}
    else:
        schema = _success_schema(e, refs, defs)
        content: dict[str, Any] = {codec.JSON: {"schema": schema}, codec.MSGPACK: {"schema": schema}}
        for media in e.extra_content:
            # YAML carries the same structure as JSON; CSV and the like are text.
            same = media.endswith(("yaml", "json"))
            content[media] = {"schema": schema if same else {"type": "string"}}
        responses[str(e.status)] = {"description": e.summary or "OK", "headers": headers, "content": content}
    for status, codes in error_codes(e).items():
        schema = error_schema(codes)
        responses[str(status)] = {
            "description": f"{STATUS_TEXT.get(status, 'Error')}: " + ", ".join(f"`{c}`" for c in codes),
            "headers": headers,
            "content": {codec.JSON: {"schema": schema}, codec.MSGPACK: {"schema": schema}},
        }
    return responses


# -- serving ---------------------------------------------------------------------------------------


def schema_router(provider: Callable[[], list[Endpoint]]) -> Router:
    """`GET /api/schema/` (JSON, or YAML with `?format=yaml`), built once from `provider()`."""
    from typing import Literal

    router = Router("schema")

    class SchemaQuery(Query):
        format: Literal["json", "yaml"] = "json"

    @lru_cache(maxsize=1)
    def document() -> dict[str, Any]:
        return openapi_document(provider())

    @lru_cache(maxsize=1)
    def as_yaml() -> bytes:
        return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True).encode()

    @router.get(
        SCHEMA_PATH,
        auth=PUBLIC,
        query=SchemaQuery,
        response={"type": "object", "description": "an OpenAPI 3.1 document"},
        extra_content=("application/yaml",),
    )
    def openapi_schema(ctx: Ctx) -> Any:
        """The OpenAPI 3.1 document of the whole API (`?format=yaml` for YAML)."""
        if ctx.query.format == "yaml":
            return Response(as_yaml(), media_type="application/yaml")
        return document()

    return router


SWAGGER_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>lpg-sync API: Swagger UI</title>
  <link rel="stylesheet" type="text/css" href="static/swagger-ui.css">
  <link rel="icon" type="image/png" href="static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="static/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="static/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "%(schema)s",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: true,
        displayRequestDuration: true,
        tryItOutEnabled: false,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


def swagger_assets() -> Path:
    """Swagger UI's dist files, as the `swagger-ui-py` package ships them (no CDN: works offline)."""
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


def swagger_ui_routes() -> list[BaseRoute]:
    """`/api/schema/swagger-ui/` (the page) and its static assets under `.../static/`."""

    async def page(request: Request) -> Response:
        return HTMLResponse(SWAGGER_HTML % {"schema": SCHEMA_PATH})

    return [
        Route(SWAGGER_PATH, page, methods=["GET", "HEAD"], name="swagger-ui"),
        Mount(SWAGGER_PATH + "static", app=StaticFiles(directory=swagger_assets()), name="swagger-ui-static"),
    ]
