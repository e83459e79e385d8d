"""The HTTP edge every context's `api.py` shares: endpoint declarations, bodies, auth, errors, pages.

A handler is a plain `def handler(ctx) -> dict`; it runs in the thread pool (PyMySQL blocks). The wrapper
here reads and decodes the body (5 MiB limit, JSON or MessagePack), authenticates the bearer token,
validates the body and the query string into frozen commands, calls the handler, and encodes the answer
in the format the client accepts. Every failure leaves as `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain import codec
from domain.accounts.authn import TokenUser, bearer_claims, resolve
from domain.accounts.authn import load_user as load_user  # re-exported for the CouchDB surface
from domain.accounts.policy import Actor, require_admin
from domain.accounts.throttle import UNKNOWN_ADDRESS
from domain.accounts.tokens import TokenClaims
from domain.db import Database, UnitOfWork
from domain.dbfaults import database_fault_response
from domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    ValidationError,
    error_body,
)
from domain.service import Call
from domain.settings import Settings
from domain.wire import Command, Query, parse, refuse_control_characters, validation_error

log = logging.getLogger("lpg.api")
T = TypeVar("T")

# The handlers' threads: as many as anyio's default for `run_in_threadpool` (40), in a pool of their own.
HANDLER_THREADS = 40
_handlers: ThreadPoolExecutor | None = None
_handler_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "lpg_handler_loop", default=None
)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (a handler, authentication) in the handlers' thread pool, with the request's
    context variables (its request id for the log) and the event loop for `on_loop`. asyncio's
    `run_in_executor` costs about two thirds of `starlette.concurrency.run_in_threadpool` (anyio's capacity
    limiter, cancel scope and checkpoints), and every request of this API makes the hop. A request
    cancelled meanwhile (the server shutting down) leaves the call to finish in its thread: a unit of work
    commits or rolls back on its own."""
    global _handlers
    if _handlers is None:
        _handlers = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="lpg-handler")
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    context.run(_handler_loop.set, loop)
    return await loop.run_in_executor(_handlers, context.run, fn, *args)


def on_loop(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From a handler's thread (`in_thread`): run the coroutine function `fn(*args)` on the request's event
    loop and wait for its result (a longpoll waiting on the feed watcher, which lives on the loop)."""
    loop = _handler_loop.get()
    if loop is None:
        raise RuntimeError("on_loop is for handlers run by in_thread")
    return asyncio.run_coroutine_threadsafe(fn(*args), loop).result()


PUBLIC, USER, ADMIN = "public", "user", "admin"
# The handler authenticates by itself (the CouchDB surface: bearer or HTTP Basic, CouchDB error shape).
SELF_AUTH = "self"
MAX_ID = 2**63 - 1
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# The caller, as loaded from the database on this request (a deactivated user is refused).
AuthUser = Actor


@dataclass
class AppState:
    settings: Settings
    db: Database


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Ctx], Any]
    auth: str = USER
    body: type[Command] | None = None
    query: type[Query] | None = None
    response: Any = None
    status: int = 200
    errors: tuple[str, ...] = ()
    summary: str = ""
    tag: str = ""
    raw_body: bool = False  # the handler reads `ctx.payload` itself (sync push, replay)
    body_optional: bool = False
    extra_content: tuple[str, ...] = ()  # other media types the handler may answer with (`text/csv` reports)
    # The bearer token is verified before the handler (no database), and its user and login session are
    # checked by the handler inside its own unit of work, with `Ctx.token_user` (the sync push: one unit,
    # one thread hop). `auth` must be USER.
    auth_in_unit: bool = False

    @property
    def name(self) -> str:
        return self.handler.__name__


@dataclass
class Ctx:
    """What a handler gets: the caller, the validated body and query, path parameters, the database."""

    request: Request
    state: AppState
    user: AuthUser | None
    path: dict[str, Any]
    payload: Any = None
    body: Any = None
    query: Any = None
    response_format: str = codec.JSON
    headers: dict[str, str] = field(default_factory=dict)
    claims: TokenClaims | None = None  # an `auth_in_unit` endpoint's verified token, its user not yet loaded

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def db(self) -> Database:
        return self.state.db

    @property
    def actor(self) -> AuthUser:
        assert self.user is not None, "endpoint declared public but needs a user"
        return self.user

    def token_user(self) -> TokenUser:
        """An `auth_in_unit` endpoint's caller, to be checked in the handler's unit (its user active, its
        login session not ended): the sync push selects it with its prefetch, in the same statement."""
        assert self.claims is not None, "token_user is for auth_in_unit endpoints"
        return TokenUser(self.claims.user_id, self.claims.family)

    def unit(self, readonly: bool = False) -> UnitOfWork:
        return self.db.unit(readonly=readonly)

    def call(self, uow: UnitOfWork, device_id: str | None = None) -> Call:
        """The service call for this request, in the unit `uow`."""
        return Call(uow.session, self.actor, self.settings, device_id=device_id)

    def run(self, work: Callable[[Call], T]) -> T:
        """Run one service call in its own unit of work and commit it (deadlock victims are retried)."""
        return self.db.run(lambda uow: work(self.call(uow)))

    def read(self, work: Callable[[Session], T]) -> T:
        return self.db.read(work)

    def absolute(self, **params: Any) -> str:
        """This request's URL with some query parameters replaced (pagination links)."""
        kept = [(k, v) for k, v in self.request.query_params.multi_items() if k not in params]
        return str(self.request.url.replace(query=urlencode(kept + [(k, str(v)) for k, v in params.items()])))


class Router:
    """Collects a context's endpoints; `server.py` mounts them all."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        def register(handler: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
            summary = options.pop("summary", None) or (handler.__doc__ or "").strip().split("\n")[0]
            self.endpoints.append(Endpoint(method, path, handler, summary=summary, tag=self.tag, **options))
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        return self.route("PUT", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        return self.route("PATCH", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
        return self.route("DELETE", path, **options)


def path_id(ctx: Ctx, name: str = "id") -> int:
    """An `{id:int}` of the path (the edge already answered 404 for one beyond BIGINT)."""
    return int(ctx.path[name])


# -- errors ------------------------------------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    fmt: str = codec.JSON,
    headers: dict[str, str] | None = None,
) -> Response:
    body = codec.encode(error_body(code, message, details), fmt)
    return Response(body, status_code=status, media_type=fmt, headers=headers)


def domain_error_response(exc: DomainError, fmt: str = codec.JSON) -> Response:
    headers = {}
    if exc.status in (429, 503) and "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    if exc.status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
    return error_response(exc.status, exc.code, exc.message, exc.details, fmt, headers)


def _safe_format(request: Request) -> str:
    try:
        return codec.response_format(request.headers.get("accept"))
    except DomainError:
        return codec.JSON


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (no such route or method) in the error shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    code = codes.get(exc.status_code, "http_error")
    message = {404: "no such resource", 405: f"{request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(exc.status_code, code, message, {}, _safe_format(request), dict(exc.headers or {}))


def database_error_response(exc: BaseException, fmt: str = codec.JSON) -> Response | None:
    """A database fault (not a bug) as `503 service_unavailable` with Retry-After; None for anything else."""
    answer = database_fault_response(exc)
    if answer is None:
        return None
    return error_response(answer.status, answer.code, answer.message, answer.details, fmt, answer.headers)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    """The last resort: a database fault is a 503 the client may retry; anything else is a bug (500)."""
    fault = database_error_response(exc, _safe_format(request))
    if fault is not None:
        log.warning("database fault on %s %s: %s", request.method, request.url.path, exc)
        return fault
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # A bug may strike after a commit (while the answer is built), so nothing is claimed about the data.
    return error_response(
        500, "internal_error", "the server failed; report it with the X-Request-ID", {}, _safe_format(request)
    )


# -- the wrapper ---------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed the limit, without reading on."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes (5 MiB)", {"limit": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes (5 MiB)", {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def authenticate(state: AppState, request: Request, required: str) -> AuthUser | None:
    """Resolve the bearer token to an active user (domain.accounts.authn, the one path every surface
    shares); enforce the endpoint's minimum role (domain.accounts.policy).

    A public endpoint (health, login, refresh, logout) ignores the Authorization header: a client that
    still sends its expired access token while refreshing must not be refused for it."""
    if required in (PUBLIC, SELF_AUTH):
        return None
    client = request.client
    address = client.host if client and client.host else UNKNOWN_ADDRESS
    user = resolve(state.db, state.settings, request.headers.get("authorization"), address)
    if required == ADMIN:
        require_admin(user, "this")
    return user


def _parse_query(model: type[Query] | None, request: Request) -> Any:
    params = request.query_params
    if model is None:
        return None
    data: dict[str, Any] = {}
    for key in params:
        values = params.getlist(key)
        data[key] = values[-1] if len(values) == 1 else values
    refuse_control_characters(data)
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise validation_error(exc) from None


def encode_result(result: Any, status: int, fmt: str, headers: dict[str, str] | None = None) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    if status == 204 or result is None:
        return Response(status_code=204 if result is None else status, headers=headers)
    return Response(codec.encode(result, fmt), status_code=status, media_type=fmt, headers=headers)


def make_view(endpoint: Endpoint, state: AppState) -> Callable[[Request], Any]:
    async def view(request: Request) -> Response:
        fmt = codec.JSON
        try:
            fmt = codec.response_format(request.headers.get("accept"), endpoint.extra_content)
            declared = request.headers.get("content-length")
            limit = state.settings.max_body_bytes
            if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes (5 MiB)", {"limit": limit})
            claims = None
            if endpoint.auth_in_unit:
                claims = bearer_claims(state.settings, request.headers.get("authorization"))
                user = None
                request.state.user_id = claims.user_id  # for the access log
            else:
                user = await in_thread(authenticate, state, request, endpoint.auth)
                if user is not None:
                    request.state.user_id = user.id  # for the access log
            ctx = Ctx(request, state, user, dict(request.path_params), response_format=fmt, claims=claims)
            for name, value in ctx.path.items():
                if isinstance(value, int) and not 0 < value <= MAX_ID:  # no row has such an id
                    raise NotFound(f"no record has {name} {value}", {name: str(value)})
            ctx.query = _parse_query(endpoint.query, request)
            if endpoint.body is not None or endpoint.raw_body or endpoint.method in {"POST", "PUT", "PATCH"}:
                raw = await read_body(request, limit)
                if raw.strip() or not endpoint.body_optional:
                    in_fmt = codec.request_format(request.headers.get("content-type"))
                    ctx.payload = codec.decode(raw, in_fmt) if raw.strip() else _empty_body(endpoint)
                    if raw.strip() and not isinstance(ctx.payload, dict):
                        raise ValidationError("the body must be an object")
                if endpoint.body is not None:
                    ctx.body = parse(endpoint.body, ctx.payload if ctx.payload is not None else {})
                elif not endpoint.raw_body and ctx.payload not in (None, {}):
                    raise ValidationError("this action takes no body")
            result = await in_thread(endpoint.handler, ctx)
            if state.settings.validate_responses:
                check_response(endpoint, result)
            return encode_result(result, endpoint.status, fmt, ctx.headers or None)
        except DomainError as exc:
            return domain_error_response(exc, fmt)
        except IntegrityError as exc:
            conflict = unique_conflict(exc)
            if conflict is None:
                raise
            return domain_error_response(conflict, fmt)

    view.__name__ = endpoint.name
    return view


_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.(\w+)")
_MYSQL_UNIQUE = re.compile(r"for key '(?:\w+\.)?(uq_\w+)'")


def unique_conflict(exc: IntegrityError) -> Conflict | None:
    """A unique key hit by a concurrent request after the service's own check (two creations of one code
    at the same moment): `conflict` (409) naming the table and field, like the check itself; the unit was
    rolled back, so nothing was written. Other integrity errors are not the client's doing: None."""
    text = str(exc.orig)
    args = getattr(exc.orig, "args", ())
    match = _SQLITE_UNIQUE.search(text)
    if match is not None:
        table, column = match.groups()
    else:
        key = _MYSQL_UNIQUE.search(text) if args and args[0] == 1062 else None  # MariaDB: duplicate entry
        if key is None:
            return None
        table, column = _unique_key(key.group(1))
    return Conflict(f"{table} {column} is already in use", {"field": column, "table": table})


def _unique_key(name: str) -> tuple[str, str]:
    """The table and column of a unique key named by the naming convention (`uq_<table>_<column>`)."""
    from domain.base import Base

    for table in Base.metadata.tables.values():
        for column in table.columns:
            if name == f"uq_{table.name}_{column.name}":
                return table.name, column.name
    return "record", name


def check_response(endpoint: Endpoint, result: Any) -> None:
    """`LPG_VALIDATE_RESPONSES` (on in tests): the answer must validate against the declared `response`
    model (each item of a page when the endpoint lists); a mismatch is a bug, so it fails loudly (500)."""
    model = endpoint.response
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or not isinstance(result, dict):
        return
    paged = endpoint.query is not None and issubclass(endpoint.query, PageQuery) and "results" not in model.model_fields
    for item in result.get("results", []) if paged else [result]:
        try:
            model.model_validate(item)
        except PydanticValidationError as exc:
            raise AssertionError(
                f"{endpoint.method} {endpoint.path} answered outside its response model: {exc}"
            ) from exc


def _empty_body(endpoint: Endpoint) -> Any:
    if endpoint.body_optional:
        return None
    from domain.errors import MalformedBody

    raise MalformedBody("the request needs a body")


def routes_for(endpoints: Iterable[Endpoint], state: AppState) -> list[Route]:
    """One Starlette route per path; several methods on one path are dispatched here, so an unknown method
    on a known path is a 405 in the error shape."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        methods = by_path.setdefault(endpoint.path, {})
        if endpoint.method in methods:
            raise ValueError(f"{endpoint.method} {endpoint.path} is declared twice")
        methods[endpoint.method] = endpoint
    routes = []
    for path, methods in by_path.items():
        views = {method: make_view(ep, state) for method, ep in methods.items()}

        async def dispatch(request: Request, views: dict[str, Any] = views) -> Response:
            view = views.get(request.method) or (views.get("GET") if request.method == "HEAD" else None)
            if view is None:
                allowed = ", ".join(sorted(views))
                return error_response(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here",
                    {"allowed": sorted(views)},
                    _safe_format(request),
                    {"Allow": allowed},
                )
            response: Response = await view(request)
            return response

        routes.append(Route(path, dispatch, name=path, methods=ALL_METHODS))
    return routes


# -- pages -------------------------------------------------------------------------------------------


class PageQuery(Query):
    """`page` (from 1) and `page_size` (1 to 500, default 50) on every list."""

    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(50, ge=1, le=500)


def paginate(
    ctx: Ctx, session: Session, stmt: Select[Any], serialize: Callable[[Any], dict[str, Any]], query: PageQuery
) -> dict[str, Any]:
    """DRF-style page: `count`, absolute `next` / `previous` links, `results`. `stmt` must be totally ordered
    (end its ORDER BY with the primary key), or rows could repeat or vanish between pages."""
    if not stmt._order_by_clauses:
        raise ValueError("paginate() needs an ordered statement: end the ORDER BY with the primary key")
    count = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    offset = (query.page - 1) * query.page_size
    rows = session.execute(stmt.limit(query.page_size).offset(offset)).scalars().all()
    has_next = offset + len(rows) < count
    return {
        "count": count,
        "next": ctx.absolute(page=query.page + 1) if has_next else None,
        "previous": ctx.absolute(page=query.page - 1) if query.page > 1 else None,
        "results": [serialize(row) for row in rows],
    }
