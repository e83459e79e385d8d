"""A read-only CouchDB replication source at `/couchdb/{db}/...` (the sync spec's last section).

`{db}` is `lpg`: everything the caller may pull (a driver: reference data and their own records). Document
ids are `entity:id`, a document's only revision is `{version}-{md5 of its canonical JSON}` (the feed is
compacted: older revisions are gone, like a compacted CouchDB database), seqs are the feed's. Writes are
refused with 403 pointing to `/api/v1/sync/push`. Errors use CouchDB's `{"error", "reason"}` shape.

The endpoints are declared `SELF_AUTH` to the shared edge and authenticate here, because a CouchDB client may
send HTTP Basic credentials as well as the bearer token, and expects CouchDB's error shape.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Table, and_, or_, select
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from starlette.responses import Response

from domain.accounts.api import client_address
from domain.accounts.policy import Actor, owner_filter
from domain.accounts.sessions import check_credentials
from domain.accounts.tokens import ACCESS, decode_token
from domain.api import SELF_AUTH, Ctx, Router, load_user
from domain.clock import utcnow
from domain.errors import DomainError, InvalidCredentials, TooManyAttempts
from domain.feed.models import PUBLIC_SCOPE, FeedEntry
from domain.feed.reader import read_page
from domain.feed.services import FEED_ENTITIES, current_seq
from sync.models import CouchLocalDoc
from sync.stream import watcher_for

router = Router("couchdb")
DBS = ("lpg",)
PUSH_INSTEAD = "this is a read-only replication source: business changes go through POST /api/v1/sync/push"


class CouchError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def _json(body: Any, status: int = 200, ctx: Ctx | None = None) -> Response:
    headers = _cors(ctx) if ctx is not None else {}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _cors(ctx: Ctx) -> dict[str, str]:
    origin = ctx.request.headers.get("origin")
    allowed = ctx.settings.cors_origins
    if origin and (origin in allowed or "*" in allowed):
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    return {}


# -- authentication: bearer token or HTTP Basic --------------------------------------------------------------

_basic_cache: dict[str, tuple[float, int]] = {}
_basic_lock = threading.Lock()
BASIC_CACHE_SECONDS = 60.0


def _actor(ctx: Ctx) -> Actor:
    header = ctx.request.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    try:
        if scheme.lower() == "bearer" and value.strip():
            claims = decode_token(ctx.settings, value.strip(), ACCESS)
            return ctx.db.read(lambda s: load_user(s, claims.user_id))
        if scheme.lower() == "basic" and value.strip():
            return _basic(ctx, value.strip())
    except DomainError as exc:
        raise CouchError(401, "unauthorized", exc.message) from None
    raise CouchError(401, "unauthorized", "send 'Authorization: Bearer <access token>' or HTTP Basic credentials")


def _basic(ctx: Ctx, value: str) -> Actor:
    try:
        username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise CouchError(401, "unauthorized", "malformed Basic credentials") from None
    # Password hashing is slow by design; a replicator sends its credentials on every request.
    key = hashlib.sha256(f"{username}\0{password}\0{ctx.settings.secret_key}".encode()).hexdigest()
    now = time.monotonic()
    with _basic_lock:
        cached = _basic_cache.get(key)
    if cached and now - cached[0] < BASIC_CACHE_SECONDS:
        return ctx.db.read(lambda s: load_user(s, cached[1]))
    # The login's throttle, timing-safe password check and failure audit (a replicator is no way around them).
    try:
        actor = check_credentials(ctx.db, username, password, client_address(ctx))
    except InvalidCredentials:
        raise CouchError(401, "unauthorized", "name or password is incorrect") from None
    except TooManyAttempts as exc:
        raise CouchError(exc.status, "too_many_requests", exc.message) from None
    with _basic_lock:
        if len(_basic_cache) > 1000:
            _basic_cache.clear()
        _basic_cache[key] = (now, actor.id)
    return ctx.db.read(lambda s: load_user(s, actor.id))


def couch(handler: Callable[[Ctx, Actor], Any]) -> Callable[[Ctx], Any]:
    """Authenticate, check `{db}`, and answer every refusal in CouchDB's shape."""

    def wrapped(ctx: Ctx) -> Any:
        try:
            actor = _actor(ctx)
            db_name = ctx.path.get("db")
            if db_name is not None and db_name not in DBS:
                raise CouchError(404, "not_found", "Database does not exist.")
            result = handler(ctx, actor)
            if isinstance(result, Response):
                result.headers.update(_cors(ctx))
                return result
            return _json(result, ctx=ctx)
        except CouchError as exc:
            return _json({"error": exc.error, "reason": exc.reason}, exc.status, ctx)
        except DomainError as exc:
            return _json({"error": "bad_request", "reason": exc.message}, exc.status, ctx)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


# -- documents -----------------------------------------------------------------------------------------------


def rev_of(row: Any) -> str:
    return f"{row.version}-{hashlib.md5(row.doc.encode(), usedforsecurity=False).hexdigest()}"


def doc_of(row: Any) -> dict[str, Any]:
    rev = rev_of(row)
    body: dict[str, Any] = {} if row.deleted else orjson.loads(row.doc)
    body.update({"_id": f"{row.entity}:{row.entity_id}", "_rev": rev})
    body["_revisions"] = {"start": row.version, "ids": [rev.split("-", 1)[1]]}
    if row.deleted:
        body["_deleted"] = True
    return body


def _parse_id(doc_id: str) -> tuple[str, int] | None:
    entity, _, number = doc_id.partition(":")
    if entity not in FEED_ENTITIES or not number.isdigit():
        return None
    return entity, int(number)


def _load(ctx: Ctx, actor: Actor, ids: list[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    if not ids:
        return {}
    scope = owner_filter(actor)

    def q(s: Any) -> dict[tuple[str, int], Any]:
        stmt = select(FeedEntry).where(or_(*[and_(FeedEntry.entity == e, FeedEntry.entity_id == i) for e, i in ids]))
        if scope is not None:
            stmt = stmt.where(FeedEntry.scope.in_([PUBLIC_SCOPE, scope]))
        return {(r.entity, r.entity_id): r for r in s.scalars(stmt)}

    return ctx.read(q)


def _missing(doc_id: str, rev: str | None) -> dict[str, Any]:
    return {"error": {"id": doc_id, "rev": rev or "undefined", "error": "not_found", "reason": "missing"}}


# -- endpoints -----------------------------------------------------------------------------------------------


@router.get("/couchdb/", auth=SELF_AUTH)
@couch
def couch_root(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """CouchDB's welcome, with a `uuid` stable for this server's database and key."""
    uuid = hashlib.sha256(f"lpg-couch\0{ctx.settings.secret_key}".encode()).hexdigest()[:32]
    return {"couchdb": "Welcome", "version": "3.3.3", "uuid": uuid, "vendor": {"name": "lpg-sync"}, "features": []}


@router.get("/couchdb/{db}/", auth=SELF_AUTH)
@couch
def couch_db(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """Database info: `update_seq` is the feed's committed head."""
    head = ctx.read(current_seq)
    return {
        "db_name": ctx.path["db"],
        "update_seq": str(head),
        "purge_seq": "0",
        "doc_del_count": 0,
        "instance_start_time": "0",
        "compact_running": False,
        "disk_format_version": 8,
        "props": {},
    }


def _since(value: str | None) -> int:
    if value in (None, "", "0"):
        return 0
    if value == "now":
        return -1
    head = value.split("-", 1)[0]  # CouchDB 2+ seqs look like "N-opaque"
    if not head.isdigit():
        raise CouchError(400, "bad_request", "since must be a seq from an earlier _changes answer")
    return int(head)


def _int_param(ctx: Ctx, name: str, default: int, high: int) -> int:
    raw = ctx.request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise CouchError(400, "bad_request", f"{name} must be a non-negative integer")
    return min(int(raw), high)


@router.get("/couchdb/{db}/_changes", auth=SELF_AUTH)
@couch
def couch_changes(ctx: Ctx, actor: Actor) -> Any:
    """`_changes` (normal or longpoll): `{"results": [{"seq", "id", "changes": [{"rev"}], "deleted"?}], "last_seq"}`."""
    params = ctx.request.query_params
    feed = params.get("feed", "normal")
    if feed not in ("normal", "longpoll"):
        raise CouchError(400, "bad_request", "feed must be normal or longpoll")
    since = _since(params.get("since"))
    limit = _int_param(ctx, "limit", 1000, 10_000) or 1
    timeout = _int_param(ctx, "timeout", 30_000, 60_000)
    scope = owner_filter(actor)
    if since < 0:
        since = ctx.read(current_seq)
    page = ctx.read(lambda s: read_page(s, since, limit, scope))
    if feed == "longpoll" and not page.rows:
        page = _wait(ctx, page.last_seq, limit, scope, timeout)
    results = []
    for row in page.rows:
        item: dict[str, Any] = {
            "seq": row.seq,
            "id": f"{row.entity}:{row.entity_id}",
            "changes": [{"rev": rev_of(row)}],
        }
        if row.deleted:
            item["deleted"] = True
        results.append(item)
    return {"results": results, "last_seq": page.last_seq, "pending": page.pending}


def _wait(ctx: Ctx, since: int, limit: int, scope: int | None, timeout_ms: int) -> Any:
    """Longpoll from a thread: wait on the event loop's feed watcher (no connection held), read again."""
    import anyio.from_thread

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        changed = anyio.from_thread.run(_wait_async, ctx.db, since, deadline)
        page = _read(ctx, since, limit, scope)
        if page.rows or not changed:
            return page
        since = page.last_seq


def _read(ctx: Ctx, since: int, limit: int, scope: int | None) -> Any:
    return ctx.read(lambda s: read_page(s, since, limit, scope))


async def _wait_async(db: Any, since: int, deadline: float) -> bool:
    return await watcher_for(db).wait_beyond(since, deadline)


@router.post("/couchdb/{db}/_bulk_get", auth=SELF_AUTH, raw_body=True)
@couch
def couch_bulk_get(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """The current revision of each requested document (`revs=true` adds `_revisions`, always present here)."""
    body = ctx.payload
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        raise CouchError(400, "bad_request", 'the body must be {"docs": [{"id": ..., "rev": ...}]}')
    wanted = [(d.get("id"), d.get("rev")) for d in body["docs"] if isinstance(d, dict)]
    keys = {doc_id: _parse_id(doc_id) for doc_id, _ in wanted if isinstance(doc_id, str)}
    rows = _load(ctx, actor, [k for k in keys.values() if k is not None])
    results = []
    for doc_id, rev in wanted:
        key = keys.get(doc_id) if isinstance(doc_id, str) else None
        row = rows.get(key) if key else None
        docs = [{"ok": doc_of(row)}] if row is not None else [_missing(str(doc_id), rev)]
        results.append({"id": doc_id, "docs": docs})
    return {"results": results}


@router.get("/couchdb/{db}/_local/{id}", auth=SELF_AUTH)
@couch
def couch_get_local(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """A replicator's checkpoint document, as it was stored by this user."""
    doc_id = str(ctx.path["id"])
    row = ctx.read(
        lambda s: s.scalars(
            select(CouchLocalDoc).where(
                CouchLocalDoc.user_id == actor.id, CouchLocalDoc.db == ctx.path["db"], CouchLocalDoc.doc_id == doc_id
            )
        ).first()
    )
    if row is None:
        raise CouchError(404, "not_found", "missing")
    return {**orjson.loads(row.doc), "_id": f"_local/{doc_id}", "_rev": row.rev}


@router.put("/couchdb/{db}/_local/{id}", auth=SELF_AUTH, raw_body=True)
@couch
def couch_put_local(ctx: Ctx, actor: Actor) -> Any:
    """Store a replicator's checkpoint document faithfully (per user); its rev counts up `0-1`, `0-2`..."""
    doc_id = str(ctx.path["id"])
    body = ctx.payload
    if not isinstance(body, dict):
        raise CouchError(400, "bad_request", "the document must be a JSON object")
    stored = {k: v for k, v in body.items() if k not in ("_id", "_rev")}
    db_name = ctx.path["db"]

    def work(uow: Any) -> str:
        s = uow.session
        row = s.scalars(
            select(CouchLocalDoc)
            .where(CouchLocalDoc.user_id == actor.id, CouchLocalDoc.db == db_name, CouchLocalDoc.doc_id == doc_id)
            .with_for_update()
        ).first()
        number = int(row.rev.split("-", 1)[1]) + 1 if row is not None else 1
        rev = f"0-{number}"
        values = {
            "user_id": actor.id,
            "db": db_name,
            "doc_id": doc_id,
            "rev": rev,
            "doc": orjson.dumps(stored).decode(),
            "updated_at": utcnow(),
        }
        table: Table = CouchLocalDoc.__table__  # type: ignore[assignment]
        if ctx.db.dialect == "sqlite":
            lite = sqlite_dialect.insert(table).values(values)
            stmt: Any = lite.on_conflict_do_update(
                index_elements=["user_id", "db", "doc_id"], set_={k: values[k] for k in ("rev", "doc", "updated_at")}
            )
        else:
            stmt = (
                mysql_dialect.insert(table)
                .values(values)
                .on_duplicate_key_update(**{k: values[k] for k in ("rev", "doc", "updated_at")})
            )
        s.execute(stmt)
        return rev

    rev = ctx.db.run(work)
    return _json({"ok": True, "id": f"_local/{doc_id}", "rev": rev}, 201, ctx)


def _refuse(ctx: Ctx, actor: Actor) -> Any:
    raise CouchError(403, "forbidden", PUSH_INSTEAD)


def _refuse_writes(*routes: tuple[str, str]) -> None:
    for method, path in routes:
        handler = couch(_refuse)
        handler.__name__ = f"couch_refuse_{method.lower()}_{path.rstrip('/').rsplit('/', 1)[-1].strip('{}')}"
        router.route(
            method, path, auth=SELF_AUTH, raw_body=True, body_optional=True, summary="Refused: use /api/v1/sync/push"
        )(handler)


def _all_docs(ctx: Ctx, actor: Actor, keys: Any) -> dict[str, Any]:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CouchError(400, "bad_request", "_all_docs here answers `keys` (a list of document ids) only")
    include = ctx.request.query_params.get("include_docs") == "true"
    parsed = {k: _parse_id(k) for k in keys}
    rows = _load(ctx, actor, [p for p in parsed.values() if p is not None])
    out: list[dict[str, Any]] = []
    for key in keys:
        ref = parsed[key]
        row = rows.get(ref) if ref else None
        if row is None:
            out.append({"key": key, "error": "not_found"})
            continue
        value: dict[str, Any] = {"rev": rev_of(row)}
        item: dict[str, Any] = {"id": key, "key": key, "value": value}
        if row.deleted:
            value["deleted"] = True
            item["doc"] = None
        elif include:
            item["doc"] = doc_of(row)
        out.append(item)
    return {"total_rows": len(out), "offset": 0, "rows": out}


@router.post("/couchdb/{db}/_all_docs", auth=SELF_AUTH, raw_body=True)
@couch
def couch_all_docs_post(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """`_all_docs` by `keys` (what PouchDB's replicator asks for first-generation revisions)."""
    body = ctx.payload if isinstance(ctx.payload, dict) else {}
    return _all_docs(ctx, actor, body.get("keys"))


@router.get("/couchdb/{db}/_all_docs", auth=SELF_AUTH)
@couch
def couch_all_docs_get(ctx: Ctx, actor: Actor) -> dict[str, Any]:
    """`_all_docs?keys=[...]`."""
    try:
        keys = orjson.loads(ctx.request.query_params.get("keys") or "null")
    except orjson.JSONDecodeError:
        raise CouchError(400, "bad_request", "keys must be a JSON list") from None
    return _all_docs(ctx, actor, keys)


# Fixed paths before "/couchdb/{db}/{docid}", which would match them first.
_refuse_writes(("POST", "/couchdb/{db}/_bulk_docs"), ("POST", "/couchdb/{db}/_revs_diff"), ("POST", "/couchdb/{db}/"))


@router.get("/couchdb/{db}/{docid}", auth=SELF_AUTH)
@couch
def couch_get_doc(ctx: Ctx, actor: Actor) -> Any:
    """One document at its current revision; `open_revs` answers a list of `{"ok": doc}` (JSON, not multipart)."""
    doc_id = str(ctx.path["docid"])
    key = _parse_id(doc_id)
    row = _load(ctx, actor, [key]).get(key) if key else None
    open_revs = ctx.request.query_params.get("open_revs")
    if open_revs is not None:
        return _json([{"ok": doc_of(row)}] if row is not None else [{"missing": open_revs}], ctx=ctx)
    if row is None:
        raise CouchError(404, "not_found", "missing")
    if row.deleted:
        raise CouchError(404, "not_found", "deleted")
    return doc_of(row)


_refuse_writes(("PUT", "/couchdb/{db}/{docid}"), ("DELETE", "/couchdb/{db}/{docid}"))
