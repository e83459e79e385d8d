"""What wraps every request before any endpoint sees it: request ids, the access log, CORS, the last-resort 500.

- `X-Request-ID`: the client's own id when it sends a sane one (1-128 of `A-Za-z0-9._:-`), else a new one;
  echoed on every response (errors, 500s and CORS preflights included) and attached to every log line
  written while the request runs (`RequestIdFilter`, through a context variable that follows the request
  into the thread pool).
- the access log (`lpg.access`): one JSON line a request with method, path, status, duration in ms,
  request id and the user id once the bearer token was resolved.
- CORS for the origins in `LPG_CORS_ORIGINS` (the tablet web app and the back office run in browsers).
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
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.api import server_error_handler

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


def edge_middleware(cors_origins: Sequence[str]) -> list[Middleware]:
    """Outermost first: request context, CORS, the last-resort 500."""
    return [
        Middleware(RequestContextMiddleware),
        Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID", "X-Client-Version"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
            allow_credentials=False,
            max_age=600,
        ),
        Middleware(CatchAllMiddleware),
    ]
