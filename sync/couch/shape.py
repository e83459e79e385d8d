"""Every answer under `/couchdb/` in CouchDB's shape, also those the CouchDB layer did not write itself.

Starlette's 404 and 405, the body limit's 413, the last-resort 500 and a database fault's 503 are written in
the `/api/v1` shape (`{"error": {"code", "message", "details"}}`) by the shared layers. A CouchDB client
reads `error` and `reason` as strings (Node PouchDB dies on anything else), so this middleware, just outside
the last-resort handler, rewrites such an answer to `{"error": "...", "reason": "..."}` with CouchDB's names,
adds `WWW-Authenticate: Basic` to a 401 and `Retry-After` to a 429 or 503 that lack one.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lpg.couch")

PREFIX = "/couchdb"
COUCH_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "file_exists",
    413: "too_large",
    415: "bad_content_type",
    429: "too_many_requests",
    500: "unknown_error",
    503: "service_unavailable",
}


def couch_body(status: int, raw: bytes) -> bytes:
    """The CouchDB form of an error body (unchanged when it already is one)."""
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("reason"), str):
        return raw
    error, reason = COUCH_NAMES.get(status, "unknown_error"), ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = body["error"]
        reason = str(inner.get("message") or inner.get("code") or "")
    if status == 404:
        reason = "missing" if not reason or reason == "no such resource" else reason
    return orjson.dumps({"error": error, "reason": reason or error.replace("_", " ")})


class CouchShapeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def couch_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status = start["status"]
            body = couch_body(status, b"".join(chunks))
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")
            ]
            names = {k.lower() for k, _ in headers}
            if status == 401:
                headers = [(k, v) for k, v in headers if k.lower() != b"www-authenticate"]
                headers.append((b"www-authenticate", b'Basic realm="lpg-sync"'))
            if status in (429, 503) and b"retry-after" not in names:
                headers.append((b"retry-after", b"1"))
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, couch_send)
