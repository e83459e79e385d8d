"""The `/couchdb/` endpoints: a CouchDB replication source (`lpg`, `results-<device>`) and target
(`queue-<device>`). See docs/couchdb.md for what a client sees; the sync spec's last section for the contract.

The endpoints are declared `SELF_AUTH` to the shared edge and authenticate in `common.couch`, because a
CouchDB client may send HTTP Basic credentials as well as the bearer token, and expects CouchDB's shape.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from domain.accounts.policy import Actor, owner_filter
from domain.api import SELF_AUTH, Ctx, Router, on_loop
from domain.clock import utcnow
from sync.couch import feed, queue
from sync.couch.common import (
    CouchError,
    DbName,
    couch,
    is_ancestor_or_self,
    json_response,
    parse_rev,
)
from sync.models import CouchLocalDoc
from sync.stream import WatchedResponse, watcher_for

router = Router("couchdb")
PUSH_INSTEAD = (
    "this database is a read-only replication source: business changes go through POST /api/v1/sync/push "
    "or by replicating a device's queue to /couchdb/queue-<device_id>"
)
# CouchDB's replicator keeps 50 history entries in its checkpoint, each with three source seqs; a CouchDB 3
# source's seqs run to hundreds of bytes (one part per shard), so a long-lived replication's checkpoint
# grows to tens of KiB. Refusing it would fail every checkpoint from then on.
LOCAL_MAX_BYTES = 1024 * 1024
LOCAL_MAX_PER_USER = 50
MAX_LIMIT = 10_000
PAGE = 1000  # rows read at a time
RESULTS_POLL = 1.0


def _source(db: DbName | None) -> DbName:
    assert db is not None
    return db


def _readable(ctx: Ctx, actor: Actor, db: DbName) -> None:
    if db.kind == "queue":
        return
    if db.kind == "results":
        assert db.device_id is not None
        queue.device_visible(ctx.db, actor, db.device_id)


def _flag(ctx: Ctx, name: str, body: dict[str, Any] | None = None) -> bool:
    value = ctx.request.query_params.get(name)
    if value is None and body is not None and name in body:
        return body[name] is True
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise CouchError(400, "bad_request", f"{name} must be true or false")


def _int_param(ctx: Ctx, name: str, default: int | None, high: int | None = None) -> int | None:
    raw = ctx.request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise CouchError(400, "bad_request", f"{name} must be a non-negative integer")
    return min(int(raw), high) if high is not None else int(raw)


def _json_param(ctx: Ctx, name: str) -> Any:
    raw = ctx.request.query_params.get(name)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CouchError(400, "bad_request", f"{name} must be JSON") from None


def _register(method: str, path: str, name: str, handler: Any, **options: Any) -> None:
    """One handler under several methods: each route gets its own name (the OpenAPI operation id)."""
    view = couch(handler)
    view.__name__ = name
    if method in ("POST", "PUT", "DELETE"):
        options = {"raw_body": True, "body_optional": True, **options}
    router.route(method, path, auth=SELF_AUTH, **options)(view)


# -- server ---------------------------------------------------------------------------------------------------


@router.get("/couchdb/", auth=SELF_AUTH)
@couch
def couch_root(ctx: Ctx, actor: Actor, db: DbName | None) -> dict[str, Any]:
    """CouchDB's welcome, with a `uuid` stable for this server's database and key."""
    uuid = hashlib.sha256(f"lpg-couch\0{ctx.settings.secret_key}".encode()).hexdigest()[:32]
    return {"couchdb": "Welcome", "version": "3.3.3", "uuid": uuid, "vendor": {"name": "lpg-sync"}, "features": []}


@router.get("/couchdb/_session", auth=SELF_AUTH)
@couch
def couch_session(ctx: Ctx, actor: Actor, db: DbName | None) -> dict[str, Any]:
    """Who the credentials are: `{ok, userCtx: {name, roles}, info}`."""
    roles = ["_admin", actor.role] if actor.is_admin else [actor.role]
    return {
        "ok": True,
        "userCtx": {"name": actor.username, "roles": roles},
        "info": {"authentication_handlers": ["default", "bearer"], "authenticated": "default"},
    }


# -- database -------------------------------------------------------------------------------------------------


@router.get("/couchdb/{db}/", auth=SELF_AUTH)
@couch
def couch_db(ctx: Ctx, actor: Actor, db: DbName | None) -> dict[str, Any]:
    """Database info: `update_seq` is the feed's committed head (of the device's results for `results-`)."""
    db = _source(db)
    _readable(ctx, actor, db)
    count = 0
    if db.kind == "source":
        seq: Any = feed.head_seq(ctx.db)
    elif db.kind == "results":
        assert db.device_id is not None
        seq = queue.results_head(ctx.db, db.device_id)
        count = queue.results_count(ctx.db, db.device_id)
    else:
        seq = "0"
    return {
        "db_name": db.name,
        "update_seq": str(seq),
        "purge_seq": "0",
        "doc_count": count,
        "doc_del_count": 0,
        "instance_start_time": "0",
        "compact_running": False,
        "disk_format_version": 8,
        "props": {},
        "sizes": {"file": 0, "external": 0, "active": 0},
    }


@router.put("/couchdb/{db}/", auth=SELF_AUTH, raw_body=True, body_optional=True)
@couch
def couch_create_db(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """The databases exist already: 412 `file_exists`, as CouchDB answers for an existing one."""
    raise CouchError(412, "file_exists", "The database could not be created, the file already exists.")


@router.post("/couchdb/{db}/_ensure_full_commit", auth=SELF_AUTH, raw_body=True, body_optional=True)
@couch
def couch_full_commit(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Every write here is committed before it is answered."""
    return json_response({"ok": True, "instance_start_time": "0"}, 201)


# -- _changes ---------------------------------------------------------------------------------------------------


def _since(value: Any) -> int:
    if value in (None, "", "0", 0):
        return 0
    if value == "now":
        return -1
    head = str(value).split("-", 1)[0]  # CouchDB 2+ seqs look like "N-opaque"
    if not (head.isascii() and head.isdigit()):
        raise CouchError(400, "bad_request", "since must be a seq from an earlier _changes answer")
    return int(head)


SELECTOR_OPS = ("$eq",)


def _selector(raw: Any) -> dict[str, Any]:
    """`filter=_selector`: equality on top-level fields (`{"f": v}` or `{"f": {"$eq": v}}`), nothing else."""
    if not isinstance(raw, dict) or not raw:
        raise CouchError(400, "bad_request", 'filter=_selector needs a body {"selector": {"field": value}}')
    wanted: dict[str, Any] = {}
    for field, value in raw.items():
        if field.startswith("$") or "." in field:
            raise CouchError(400, "bad_request", f"selector: only equality on top-level fields is supported ({field})")
        if isinstance(value, dict):
            if list(value) != ["$eq"]:
                raise CouchError(400, "bad_request", f"selector: only $eq is supported ({field})")
            value = value["$eq"]
        wanted[field] = value
    return wanted


class ChangesRequest:
    def __init__(self, ctx: Ctx, body: dict[str, Any]) -> None:
        params = ctx.request.query_params
        self.feed = params.get("feed", "normal")
        if self.feed not in ("normal", "longpoll", "continuous", "eventsource"):
            raise CouchError(400, "bad_request", "feed must be normal, longpoll, continuous or eventsource")
        style = params.get("style", "main_only")
        if style not in ("main_only", "all_docs"):
            raise CouchError(400, "bad_request", "style must be main_only or all_docs")
        self.since_raw = params.get("since", body.get("since"))
        self.limit = _int_param(ctx, "limit", None, MAX_LIMIT)
        self.timeout = _int_param(ctx, "timeout", 60_000, 600_000) or 0
        heartbeat = params.get("heartbeat")
        self.heartbeat: int | None = None
        if heartbeat == "true":
            self.heartbeat = 60_000
        elif heartbeat not in (None, "", "false"):
            self.heartbeat = _int_param(ctx, "heartbeat", None, 600_000)
        self.include_docs = _flag(ctx, "include_docs", body)
        self.revs = _flag(ctx, "revs")
        self.descending = _flag(ctx, "descending")
        self.filter = params.get("filter")
        self.doc_ids: list[tuple[str, int]] | None = None
        self.selector: dict[str, Any] | None = None
        if self.filter == "_doc_ids":
            ids = body.get("doc_ids") if "doc_ids" in body else _json_param(ctx, "doc_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise CouchError(400, "bad_request", "filter=_doc_ids needs doc_ids, a JSON list of document ids")
            self.doc_ids = [p for p in (feed.parse_id(i) for i in ids) if p is not None]
        elif self.filter == "_selector":
            self.selector = _selector(body.get("selector"))
        elif self.filter is not None:
            raise CouchError(400, "bad_request", f"filter {self.filter!r} is not supported: use _doc_ids or _selector")
        if params.get("view") is not None:
            raise CouchError(400, "bad_request", "view filters are not supported")


def _change_bytes(row: feed.Row, docs: bool, revs: bool) -> bytes:
    # An id is `entity:digits` and a revision `N-hex`: nothing in either needs escaping.
    head = b'{"seq":%d,"id":"%s","changes":[{"rev":"%s"}]' % (row.seq, row.key.encode(), row.rev.encode())
    if row.deleted:
        head += b',"deleted":true'
    if docs:
        head += b',"doc":' + feed.doc_bytes(row, revs)
    return head + b"}"


def _matches(row: feed.Row, wanted: dict[str, Any]) -> bool:
    if row.deleted or row.doc is None:
        return False
    doc = orjson.loads(row.doc)
    doc.update({"_id": row.key, "_rev": row.rev})
    return all(field in doc and doc[field] == value for field, value in wanted.items())


def _page(ctx: Ctx, actor: Actor, q: ChangesRequest, since: int, limit: int) -> feed.Page:
    user = owner_filter(actor)
    docs = q.include_docs or q.selector is not None
    if q.doc_ids is not None:
        return feed.changes_for_keys(ctx.db, q.doc_ids, since, limit, user, docs)
    if q.descending:
        return feed.changes_descending(ctx.db, since or None, limit, user, docs)
    if q.selector is None:
        return feed.changes_page(ctx.db, since, limit, user, docs)
    # A selector filters pages of the scope's feed; `last_seq` is the last row examined.
    kept: list[feed.Row] = []
    page = feed.changes_page(ctx.db, since, limit, user, True)
    for _ in range(20):
        kept += [r for r in page.rows if _matches(r, q.selector)]
        if len(kept) >= limit or not page.pending:
            break
        page = feed.changes_page(ctx.db, page.last_seq, limit, user, True)
    return feed.Page(kept, page.last_seq, page.pending)


def _changes_body(ctx: Ctx) -> dict[str, Any]:
    if ctx.request.method != "POST" or ctx.payload is None:
        return {}
    if not isinstance(ctx.payload, dict):
        raise CouchError(400, "bad_request", "the body must be a JSON object")
    return ctx.payload


def couch_changes(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """`_changes`: `{"results": [{"seq", "id", "changes": [{"rev"}], "deleted"?, "doc"?}], "last_seq", "pending"}`."""
    db = _source(db)
    _readable(ctx, actor, db)
    q = ChangesRequest(ctx, _changes_body(ctx))
    if db.kind == "results":
        return _result_changes(ctx, db, q)
    if db.kind == "queue":
        return {"results": [], "last_seq": 0, "pending": 0}
    since = _since(q.since_raw)
    if since < 0:
        since = feed.head_seq(ctx.db)
    if q.feed in ("continuous", "eventsource"):
        media = "text/event-stream" if q.feed == "eventsource" else "application/json"
        return WatchedResponse(lambda: _stream(ctx, actor, q, since), media)
    limit = q.limit if q.limit is not None else PAGE
    page = _page(ctx, actor, q, since, max(limit, 1))
    if q.feed == "longpoll" and not page.rows and not q.descending:
        wait = q.timeout if q.heartbeat is None else min(q.timeout, q.heartbeat)
        page = _wait(ctx, actor, q, page.last_seq, max(limit, 1), wait)
    if q.limit is None and page.pending and not q.descending:
        # No `limit`: every change, as CouchDB answers. CouchDB's replicator reads a one-shot replication's
        # feed with a single such request and ends when it ends, so a page would end its replication early.
        return WatchedResponse(lambda: _all_pages(ctx, actor, q, page), "application/json")
    items = b",".join(_change_bytes(r, q.include_docs, q.revs) for r in page.rows)
    return Response(
        b'{"results":[%s],"last_seq":%d,"pending":%d}' % (items, page.last_seq, page.pending),
        media_type="application/json",
    )


async def _all_pages(ctx: Ctx, actor: Actor, q: ChangesRequest, page: feed.Page) -> AsyncIterator[bytes]:
    """A normal feed without `limit`, streamed a page at a time (memory stays flat): each page is read
    after the `last_seq` of the one before, so nothing is skipped; `last_seq` is the last page's."""
    head = b'{"results":['
    while True:
        items = b",".join(_change_bytes(r, q.include_docs, q.revs) for r in page.rows)
        if items:
            yield head + items
            head = b","
        if not page.pending:
            break
        page = await run_in_threadpool(_page, ctx, actor, q, page.last_seq, PAGE)
    yield (b'{"results":[' if head != b"," else b"") + b'],"last_seq":%d,"pending":0}' % page.last_seq


def _wait(ctx: Ctx, actor: Actor, q: ChangesRequest, since: int, limit: int, timeout_ms: int) -> feed.Page:
    """Longpoll from a thread: wait on the event loop's feed watcher (no connection held), read again."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        changed = on_loop(_wait_async, ctx, since, deadline)
        page = _page(ctx, actor, q, since, limit)
        if page.rows or not changed:
            return page
        since = page.last_seq


async def _wait_async(ctx: Ctx, since: int, deadline: float) -> bool:
    return await watcher_for(ctx.db).wait_beyond(since, deadline)


async def _stream(ctx: Ctx, actor: Actor, q: ChangesRequest, since: int) -> AsyncIterator[bytes]:
    """`feed=continuous` (a JSON line a change) or `eventsource` (`data:` events), heartbeats as empty
    lines, until `timeout` (or for good with a heartbeat and no timeout param); then `{"last_seq"}`."""
    forever = q.heartbeat is not None and ctx.request.query_params.get("timeout") is None
    deadline = time.monotonic() + q.timeout / 1000
    beat = (q.heartbeat or 0) / 1000
    sent = 0
    limit = q.limit
    event = q.feed == "eventsource"
    while True:
        page = await run_in_threadpool(_page, ctx, actor, q, since, min(limit - sent, 1000) if limit else 1000)
        for row in page.rows:
            line = _change_bytes(row, q.include_docs, q.revs)
            yield (b"data: " + line + b"\nid: %d\n\n" % row.seq) if event else line + b"\n"
            sent += 1
        since = page.last_seq
        if limit is not None and sent >= limit:
            break
        if page.rows and page.pending:
            continue
        now = time.monotonic()
        if not forever and now >= deadline:
            break
        until = now + beat if beat else deadline
        if not forever:
            until = min(until, deadline)
        changed = await watcher_for(ctx.db).wait_beyond(since, until)
        if not changed and beat:
            yield b"\n"
    if not event:
        yield b'{"last_seq":%d,"pending":0}\n' % since


def _result_changes(ctx: Ctx, db: DbName, q: ChangesRequest) -> Any:
    assert db.device_id is not None
    if q.filter is not None or q.descending or q.feed in ("continuous", "eventsource"):
        raise CouchError(400, "bad_request", "results databases answer feed=normal|longpoll without filters")
    since = queue.parse_results_since(q.since_raw)
    limit = q.limit if q.limit is not None else 1000
    changes, last = queue.result_changes(ctx.db, db.device_id, since, max(limit, 1))
    if q.feed == "longpoll" and not changes:
        # Results are written by pushes; a push that applies something moves the feed (the watcher wakes
        # at once), one that only refuses does not: read again at least every RESULTS_POLL seconds.
        wait = q.timeout if q.heartbeat is None else min(q.timeout, q.heartbeat)
        deadline = time.monotonic() + wait / 1000
        head = feed.head_seq(ctx.db)
        while not changes and time.monotonic() < deadline:
            until = min(deadline, time.monotonic() + RESULTS_POLL)
            on_loop(_wait_async, ctx, head, until)
            head = feed.head_seq(ctx.db)
            changes, last = queue.result_changes(ctx.db, db.device_id, since, max(limit, 1))
    results = []
    for change in changes:
        item: dict[str, Any] = {"seq": change.seq, "id": change.doc.temp_id, "changes": [{"rev": change.doc.rev}]}
        if q.include_docs:
            item["doc"] = change.doc.doc(q.revs)
        results.append(item)
    return {"results": results, "last_seq": last, "pending": 0}


_register("GET", "/couchdb/{db}/_changes", "couch_changes_get", couch_changes)
_register("POST", "/couchdb/{db}/_changes", "couch_changes_post", couch_changes)


# -- documents ----------------------------------------------------------------------------------------------------


def _bulk_get_item(doc_id: Any, rev: Any, row: feed.Row | None, latest: bool) -> bytes:
    """One `_bulk_get` result: the current revision when it is the asked one (or `latest`, or none asked)."""
    if row is not None and (
        rev is None or rev == row.rev or (latest and is_ancestor_or_self(row.key, row.number, rev))
    ):
        return b'{"id":%s,"docs":[{"ok":%s}]}' % (orjson.dumps(doc_id), feed.doc_bytes(row, True))
    error = {"id": doc_id, "rev": rev if rev is not None else "undefined", "error": "not_found", "reason": "missing"}
    return orjson.dumps({"id": doc_id, "docs": [{"error": error}]})


@router.post("/couchdb/{db}/_bulk_get", auth=SELF_AUTH, raw_body=True)
@couch
def couch_bulk_get(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Documents by id and rev, with `_revisions` (their ancestry), for any number of ids."""
    db = _source(db)
    _readable(ctx, actor, db)
    body = ctx.payload
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        raise CouchError(400, "bad_request", 'the body must be {"docs": [{"id": ..., "rev": ...}]}')
    wanted = [(d.get("id"), d.get("rev")) for d in body["docs"] if isinstance(d, dict)]
    latest = _flag(ctx, "latest")
    if db.kind == "results":
        assert db.device_id is not None
        found = queue.result_docs(ctx.db, db.device_id, [i for i, _ in wanted if isinstance(i, str)])
        out = []
        for doc_id, rev in wanted:
            result = found.get(doc_id) if isinstance(doc_id, str) else None
            ok = result is not None and (rev is None or rev == result.rev or latest)
            out.append(
                {"id": doc_id, "docs": [{"ok": result.doc(True)}]}
                if ok and result is not None
                else orjson.loads(_bulk_get_item(doc_id, rev, None, latest))
            )
        return {"results": out}
    keys = {i: feed.parse_id(i) for i, _ in wanted if isinstance(i, str)}
    rows = (
        feed.rows_by_keys(ctx.db, [k for k in keys.values() if k], owner_filter(actor), True)
        if db.kind == "source"
        else {}
    )
    items = []
    for doc_id, rev in wanted:
        key = keys.get(doc_id) if isinstance(doc_id, str) else None
        items.append(_bulk_get_item(doc_id, rev, rows.get(key) if key else None, latest))
    return Response(b'{"results":[' + b",".join(items) + b"]}", media_type="application/json")


def _all_docs_row(key: str, row: feed.Row | None, docs: bool, by_key: bool) -> bytes:
    if row is None:
        return orjson.dumps({"key": key, "error": "not_found"})
    value = b'{"rev":"%s"%s}' % (row.rev.encode(), b',"deleted":true' if row.deleted else b"")
    out = b'{"id":%s,"key":%s,"value":%s' % (orjson.dumps(row.key), orjson.dumps(row.key), value)
    if docs:
        out += b',"doc":' + (b"null" if row.deleted else feed.doc_bytes(row, False))
    return out + b"}"


def _key_param(ctx: Ctx, body: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name) if name in body else _json_param(ctx, name)
        if value is not None:
            if not isinstance(value, str):
                raise CouchError(400, "bad_request", f"{name} must be a JSON string (a document id)")
            return value
    return None


def couch_all_docs(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """`_all_docs` with or without `keys`, `startkey`/`endkey`, `limit`, `skip`, `descending`, `include_docs`."""
    db = _source(db)
    _readable(ctx, actor, db)
    body = ctx.payload if ctx.request.method == "POST" and isinstance(ctx.payload, dict) else {}
    docs = _flag(ctx, "include_docs", body)
    keys = body.get("keys") if "keys" in body else _json_param(ctx, "keys")
    user = owner_filter(actor)
    if db.kind != "source":
        if keys is None:
            return {"total_rows": 0, "offset": 0, "rows": []}
        return {"total_rows": 0, "offset": 0, "rows": [{"key": k, "error": "not_found"} for k in keys]}
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CouchError(400, "bad_request", "keys must be a JSON list of document ids")
        parsed = {k: feed.parse_id(k) for k in keys}
        rows = feed.rows_by_keys(ctx.db, [p for p in parsed.values() if p], user, docs)
        items = [_all_docs_row(k, rows.get(parsed[k]) if parsed[k] else None, docs, True) for k in keys]  # type: ignore[arg-type]
        total: int = len(items)
        offset = 0
    else:
        skip = _int_param(ctx, "skip", 0) or 0
        r = feed.Range(
            start=_key_param(ctx, body, "startkey", "start_key"),
            end=_key_param(ctx, body, "endkey", "end_key"),
            inclusive_end=ctx.request.query_params.get("inclusive_end", "true") != "false",
            descending=_flag(ctx, "descending", body),
            limit=_int_param(ctx, "limit", None),
            skip=skip,
        )
        total, found = feed.all_docs_range(ctx.db, r, user, docs)
        items = [_all_docs_row(row.key, row, docs, False) for row in found]
        offset = skip
    return Response(
        b'{"total_rows":%d,"offset":%d,"rows":[%s]}' % (total, offset, b",".join(items)),
        media_type="application/json",
    )


_register("GET", "/couchdb/{db}/_all_docs", "couch_all_docs_get", couch_all_docs)
_register("POST", "/couchdb/{db}/_all_docs", "couch_all_docs_post", couch_all_docs)


# -- _local documents: replication checkpoints ---------------------------------------------------------------


def _local_row(s: Any, user: int, db: str, doc_id: str, lock: bool = False) -> CouchLocalDoc | None:
    stmt = select(CouchLocalDoc).where(
        CouchLocalDoc.user_id == user, CouchLocalDoc.db == db, CouchLocalDoc.doc_id == doc_id
    )
    return s.scalars(stmt.with_for_update() if lock else stmt).first()


def _local_rev(body: dict[str, Any]) -> Any:
    """The revision a `_local` write is based on: `_rev`, or `_revisions` alone. CouchDB's replicator sends
    both (`"_rev": "0-3"`, `"_revisions": {"start": 0, "ids": ["3"]}`); neither is part of the stored body:
    a `_revisions` kept there would come back on the next GET, and CouchDB's document parser takes
    `_revisions` over `_rev`, so the replicator would base its next write on a stale revision (409)."""
    for name in body:
        if name.startswith("_") and name not in ("_id", "_rev", "_revisions"):
            raise CouchError(400, "doc_validation", f"Bad special document member: {name}")
    revisions = body.get("_revisions")
    if "_rev" in body or revisions is None:
        return body.get("_rev")
    ids = revisions.get("ids") if isinstance(revisions, dict) else None
    start = revisions.get("start") if isinstance(revisions, dict) else None
    if not isinstance(start, int) or not isinstance(ids, list) or not ids or not isinstance(ids[0], str):
        raise CouchError(400, "doc_validation", "_revisions must be {start, ids}")
    return f"{start}-{ids[0]}"


@router.get("/couchdb/{db}/_local/{id}", auth=SELF_AUTH)
@couch
def couch_get_local(ctx: Ctx, actor: Actor, db: DbName | None) -> dict[str, Any]:
    """A replicator's checkpoint document, as it was stored by this user."""
    db = _source(db)
    doc_id = str(ctx.path["id"])
    row = ctx.read(lambda s: _local_row(s, actor.id, db.name, doc_id))
    if row is None:
        raise CouchError(404, "not_found", "missing")
    body = {k: v for k, v in orjson.loads(row.doc).items() if not k.startswith("_")}
    return {**body, "_id": f"_local/{doc_id}", "_rev": row.rev}


@router.put("/couchdb/{db}/_local/{id}", auth=SELF_AUTH, raw_body=True)
@couch
def couch_put_local(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Store a checkpoint document (per user): its `_rev` must be the stored one (409 when stale), its
    size at most 1 MiB; beyond 50 documents a user's least recently written one is dropped."""
    db = _source(db)
    doc_id = str(ctx.path["id"])
    body = ctx.payload
    if not isinstance(body, dict):
        raise CouchError(400, "bad_request", "the document must be a JSON object")
    given = _local_rev(body)
    stored = orjson.dumps({k: v for k, v in body.items() if not k.startswith("_")})
    if len(stored) > LOCAL_MAX_BYTES or len(doc_id) > 200:
        raise CouchError(413, "too_large", f"a _local document holds at most {LOCAL_MAX_BYTES} bytes")

    def work(uow: Any) -> str:
        s = uow.session
        row = _local_row(s, actor.id, db.name, doc_id, lock=True)
        if (row.rev if row is not None else None) != given:
            raise CouchError(409, "conflict", "Document update conflict.")
        now = utcnow()
        if row is None:
            rev = "0-1"
            s.add(
                CouchLocalDoc(user_id=actor.id, db=db.name, doc_id=doc_id, rev=rev, doc=stored.decode(), updated_at=now)
            )
            s.flush()
            count = s.scalar(select(func.count()).where(CouchLocalDoc.user_id == actor.id)) or 0
            if count > LOCAL_MAX_PER_USER:
                oldest = s.scalars(
                    select(CouchLocalDoc.id)
                    .where(CouchLocalDoc.user_id == actor.id)
                    .order_by(CouchLocalDoc.updated_at, CouchLocalDoc.id)
                    .limit(count - LOCAL_MAX_PER_USER)
                ).all()
                s.execute(delete(CouchLocalDoc).where(CouchLocalDoc.id.in_(oldest)))
            return rev
        rev = f"0-{int(row.rev.split('-', 1)[1]) + 1}"
        s.execute(
            update(CouchLocalDoc).where(CouchLocalDoc.id == row.id).values(rev=rev, doc=stored.decode(), updated_at=now)
        )
        return rev

    try:
        rev = ctx.db.run(work)
    except IntegrityError:  # a concurrent first write of the same document won
        raise CouchError(409, "conflict", "Document update conflict.") from None
    return json_response({"ok": True, "id": f"_local/{doc_id}", "rev": rev}, 201)


@router.delete("/couchdb/{db}/_local/{id}", auth=SELF_AUTH, raw_body=True, body_optional=True)
@couch
def couch_delete_local(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Remove a checkpoint document; `rev` must be the stored one."""
    db = _source(db)
    doc_id = str(ctx.path["id"])
    given = ctx.request.query_params.get("rev")

    def work(uow: Any) -> str:
        row = _local_row(uow.session, actor.id, db.name, doc_id, lock=True)
        if row is None:
            raise CouchError(404, "not_found", "missing")
        if row.rev != given:
            raise CouchError(409, "conflict", "Document update conflict.")
        uow.session.execute(delete(CouchLocalDoc).where(CouchLocalDoc.id == row.id))
        return row.rev

    ctx.db.run(work)
    return {"ok": True, "id": f"_local/{doc_id}", "rev": "0-0"}


# -- writes: a device's queue ---------------------------------------------------------------------------------------


def _queue_only(db: DbName | None) -> DbName:
    db = _source(db)
    if db.kind != "queue":
        raise CouchError(403, "forbidden", PUSH_INSTEAD)
    return db


@router.post("/couchdb/{db}/_revs_diff", auth=SELF_AUTH, raw_body=True)
@couch
def couch_revs_diff(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Which queued changes the server still needs (all but the applied ones)."""
    target = _queue_only(db)
    return queue.revs_diff(ctx.db, actor, target, ctx.payload)


@router.post("/couchdb/{db}/_bulk_docs", auth=SELF_AUTH, raw_body=True)
@couch
def couch_bulk_docs(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Apply queued changes through the push's reconciler; refused ones answer `forbidden` one by one."""
    target = _queue_only(db)
    return json_response(queue.bulk_docs(ctx.db, actor, target, ctx.payload), 201)


def _refuse(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """Writes other than a queue's (the database name was checked: an unknown one is a 404 first)."""
    raise CouchError(403, "forbidden", PUSH_INSTEAD)


_register("POST", "/couchdb/{db}/", "couch_refuse_post_db", _refuse, summary="Refused: use the push")


MULTIPART = "multipart/mixed"


def _wants_multipart(accept: str | None) -> bool:
    """Whether `Accept` names `multipart/mixed` (or `multipart/*`) with q > 0, as CouchDB's replicator sends
    for `open_revs`. Other clients (PouchDB sends `application/json`, a bare `*/*`) get the JSON list."""
    for part in (accept or "").split(","):
        kind, _, params = part.strip().partition(";")
        if kind.strip().lower() not in (MULTIPART, "multipart/*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def _open_revs_multipart(parts: list[tuple[bytes | None, Any]]) -> Response:
    """`open_revs` as CouchDB sends it to `Accept: multipart/mixed`: one part per asked revision, a found
    one `Content-Type: application/json` (no parameters: the replicator matches the type exactly), a missing
    one `application/json; error="true"` with `{"missing": rev}`; the body ends right after the closing
    `--`, as CouchDB's (its parser wants nothing after it)."""
    boundary = hashlib.md5(os.urandom(16), usedforsecurity=False).hexdigest().encode()
    out = [b"--" + boundary]
    for doc, rev in parts:
        if doc is not None:
            out.append(b"\r\nContent-Type: application/json\r\n\r\n" + doc)
        else:
            missing = orjson.dumps({"missing": rev})
            out.append(b'\r\nContent-Type: application/json; error="true"\r\n\r\n' + missing)
        out.append(b"\r\n--" + boundary)
    out.append(b"--")
    return Response(b"".join(out), media_type=f'{MULTIPART}; boundary="{boundary.decode()}"')


def _open_revs(ctx: Ctx, raw: str, current: tuple[str, bytes] | None, accepts: Any) -> Response:
    """`open_revs=all|[...]`: `{"ok": doc}` for the current revision when it is asked (or `latest` and an
    asked one is its ancestor), `{"missing": rev}` otherwise; `all` of a missing document is 404."""
    if raw == "all":
        if current is None:
            raise CouchError(404, "not_found", "missing")
        wanted: list[Any] = [current[0]]
    else:
        try:
            wanted = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CouchError(400, "bad_request", "open_revs must be all or a JSON list of revs") from None
        if not isinstance(wanted, list):
            raise CouchError(400, "bad_request", "open_revs must be all or a JSON list of revs")
    parts = [(current[1] if current is not None and accepts(rev) else None, rev) for rev in wanted]
    if _wants_multipart(ctx.request.headers.get("accept")):
        return _open_revs_multipart(parts)
    items = [b'{"ok":' + doc + b"}" if doc is not None else orjson.dumps({"missing": rev}) for doc, rev in parts]
    return Response(b"[" + b",".join(items) + b"]", media_type="application/json")


@router.get("/couchdb/{db}/{docid}", auth=SELF_AUTH, extra_content=(MULTIPART,))
@couch
def couch_get_doc(ctx: Ctx, actor: Actor, db: DbName | None) -> Any:
    """One document: current revision, or `rev=` (an older one is gone: 404), `open_revs` (`all` or a JSON
    list: a JSON list of `{"ok"}` / `{"missing"}`, or multipart/mixed when `Accept` asks for it, as CouchDB's
    replicator does), `revs=true` for `_revisions`, `latest=true`."""
    db = _source(db)
    _readable(ctx, actor, db)
    doc_id = str(ctx.path["docid"])
    revs = _flag(ctx, "revs")
    latest = _flag(ctx, "latest")
    params = ctx.request.query_params
    open_revs = params.get("open_revs")
    if db.kind == "results":
        assert db.device_id is not None
        result = queue.result_docs(ctx.db, db.device_id, [doc_id]).get(doc_id)
        if open_revs is not None:
            found = (result.rev, orjson.dumps(result.doc(revs))) if result is not None else None
            return _open_revs(ctx, open_revs, found, lambda rev: result is not None and (rev == result.rev or latest))
        if result is None:
            raise CouchError(404, "not_found", "missing")
        return result.doc(revs)
    key = feed.parse_id(doc_id) if db.kind == "source" else None
    row = feed.rows_by_keys(ctx.db, [key], owner_filter(actor), True).get(key) if key else None
    if open_revs is not None:
        current = (row.rev, feed.doc_bytes(row, revs)) if row is not None else None
        return _open_revs(
            ctx,
            open_revs,
            current,
            lambda rev: (
                row is not None and (rev == row.rev or (latest and is_ancestor_or_self(row.key, row.number, rev)))
            ),
        )
    if row is None:
        raise CouchError(404, "not_found", "missing")
    rev = params.get("rev")
    if rev is not None and rev != row.rev:
        if parse_rev(rev) is None:
            raise CouchError(400, "bad_request", "Invalid rev format")
        raise CouchError(404, "not_found", "missing")
    if row.deleted and rev is None:
        raise CouchError(404, "not_found", "deleted")
    return Response(feed.doc_bytes(row, revs), media_type="application/json")


_register("PUT", "/couchdb/{db}/{docid}", "couch_refuse_put_doc", _refuse, summary="Refused: use the push")
_register("DELETE", "/couchdb/{db}/{docid}", "couch_refuse_delete_doc", _refuse, summary="Refused: use the push")
