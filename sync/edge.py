"""What wraps every request before any endpoint sees it: request ids, the access log, CORS, the last-resort 500.

- `X-Request-ID`: the client's own id when it sends a sane one (1-128 of `A-Za-z0-9._:-`), else a new one;
  echoed on every response (errors, 500s and CORS preflights included) and attached to every log line
  written while the request runs (`RequestIdFilter`, through a context variable that follows the request
  into the thread pool).
- the access log (`lpg.access`): one JSON line a request with method, path, status, duration in ms,
  request id and the user id once the bearer token was resolved.
- CORS for the origins in `LPG_CORS_ORIGINS` (the tablet web app and the back office run in browsers), as
  the Fetch standard wants it for credentialed requests (PouchDB sends credentials): only a configured
  origin is echoed, with `Access-Control-Allow-Credentials: true` on the preflight and on the answer, and
  one `Vary` header. `LPG_CORS_ORIGINS=*` is refused when the app is built: a wildcard cannot be combined
  with credentials, and reflecting any origin with them would hand every web page the user's data.
- Every answer under `/couchdb/` in CouchDB's error shape (`sync.couch.shape`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.api import server_error_handler
from sync.couch.shape import CouchShapeMiddleware

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
request_id_var: ContextVar[str] = ContextVar("lpg_request_id", default="-")
access_log = logging.getLogger("lpg.access")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute: the current request's id, or `-` outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (the root logger by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


def configure_logging(level: int = logging.INFO) -> None:
    """The server's log format, with the request id on every line (idempotent: workers call it too)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT)
    install_log_filter(root)


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _SANE_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """The outermost layer: assigns the request id, echoes it, and writes the access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record: dict[str, Any] = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request_id,
                "user_id": state.get("user_id"),
            }
            access_log.info(json.dumps(record, separators=(",", ":")), extra={"access": record})
            request_id_var.reset(token)


class CatchAllMiddleware:
    """Inside CORS: a bug becomes the 500 error body here, so it still carries CORS headers and the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await server_error_handler(Request(scope), exc)
            await response(scope, receive, send)


CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = ("authorization", "content-type", "accept", "x-request-id", "x-client-version")
CORS_EXPOSE = "X-Request-ID, Retry-After, WWW-Authenticate, Content-Type, ETag"
CORS_MAX_AGE = "600"


def _merge_vary(headers: list[tuple[bytes, bytes]], names: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """One `Vary` header holding every name once (earlier layers may have written their own)."""
    values: list[str] = []
    kept = []
    for key, value in headers:
        if key.lower() == b"vary":
            values += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
        else:
            kept.append((key, value))
    for name in names:
        if name.lower() not in {v.lower() for v in values}:
            values.append(name)
    return [*kept, (b"vary", ", ".join(values).encode("latin-1"))]


def refuse_wildcard(origins: Sequence[str]) -> None:
    if any(o.strip() == "*" for o in origins):
        raise ValueError(
            "LPG_CORS_ORIGINS=* is refused: browsers send credentials, which a wildcard cannot allow; "
            "list the web apps' origins (scheme://host[:port], comma separated)"
        )


class CorsMiddleware:
    """CORS for credentialed requests from the configured origins only (see the module's docstring)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        refuse_wildcard(origins)
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get(b"origin")
        allowed = origin is not None and origin in self.origins
        if scope["method"] == "OPTIONS" and origin is not None and b"access-control-request-method" in headers:
            await self._preflight(scope, receive, send, origin if allowed else None, headers)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-allow-")
                    and k.lower() != b"access-control-expose-headers"
                ]
                out += [
                    (b"access-control-allow-origin", str(origin).encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-expose-headers", CORS_EXPOSE.encode()),
                ]
                message = {**message, "headers": _merge_vary(out, ["Origin"])}
            await send(message)

        await self.app(scope, receive, cors_send)

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin: str | None, headers: dict[bytes, str]
    ) -> None:
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if origin is None:
            response = PlainTextResponse("Disallowed CORS origin", status_code=400, headers={"Vary": vary})
            await response(scope, receive, send)
            return
        method = headers.get(b"access-control-request-method", "").upper()
        requested = [h.strip().lower() for h in headers.get(b"access-control-request-headers", "").split(",")]
        requested = [h for h in requested if h]
        refused = [h for h in requested if h not in CORS_HEADERS]
        if method not in CORS_METHODS.split(", ") or refused:
            what = f"method {method}" if refused == [] else "headers " + ", ".join(refused)
            response = PlainTextResponse(f"Disallowed CORS {what}", status_code=400, headers={"Vary": vary})
            await response(scope, receive, send)
            return
        response = PlainTextResponse(
            "OK",
            status_code=200,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": ", ".join(CORS_HEADERS),
                "Access-Control-Max-Age": CORS_MAX_AGE,
                "Vary": vary,
            },
        )
        await response(scope, receive, send)


def edge_middleware(cors_origins: Sequence[str]) -> list[Middleware]:
    """Outermost first: request context, CORS, CouchDB's error shape under /couchdb, the last-resort 500."""
    refuse_wildcard(cors_origins)
    return [
        Middleware(RequestContextMiddleware),
        Middleware(CorsMiddleware, origins=list(cors_origins)),
        Middleware(CouchShapeMiddleware),
        Middleware(CatchAllMiddleware),
    ]
