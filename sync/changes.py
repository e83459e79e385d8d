"""Pull: `GET /api/v1/sync/changes` (normal, longpoll, continuous), checkpoints, and the device registry.

The feed rows' documents are stored as canonical JSON text; a JSON answer splices that text into bytes
built here, without decoding a single document. A MessagePack answer decodes each document with orjson
and packs it with ormsgpack (for JSON values the same bytes as msgpack's Packer, in half the time).
Longpoll and continuous answers wait in the event loop (`sync.stream`), holding no database connection
and no thread while they wait; each page is read in the thread pool in its own short snapshot
(`domain.feed.reader`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgpack
import orjson
import ormsgpack
from pydantic import Field, StrictInt, field_validator
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from domain import codec
from domain.accounts.models import Device, User
from domain.accounts.policy import owner_filter, require_admin
from domain.api import ADMIN, USER, Ctx, PageQuery, Router, paginate
from domain.clock import rfc3339, utcnow
from domain.db import Database
from domain.errors import NotFound, ValidationError
from domain.feed.reader import RawPage, RawRow, Scope, fetch_current, fetch_page
from domain.feed.services import FEED_ENTITIES, current_seq
from domain.wire import Command, Query
from sync.models import Checkpoint
from sync.stream import WatchedResponse, watcher_for

router = Router("sync")
log = logging.getLogger("lpg.sync.pull")

MAX_LIMIT = 10_000
MAX_TIMEOUT_MS = 60_000
# A device's last pulled seq is written at most this often while it pages (always when it is caught up).
DEVICE_WRITE_SECONDS = 2.0
NDJSON = codec.NDJSON


class ChangesQuery(Query):
    since: int = Field(0, ge=0, le=2**63 - 1)
    limit: int = Field(1000, ge=1, le=MAX_LIMIT)
    entities: str | None = None
    feed: Literal["normal", "longpoll", "continuous"] = "normal"
    timeout: int = Field(30_000, ge=0, le=MAX_TIMEOUT_MS)
    heartbeat: int | None = Field(None, ge=100, le=MAX_TIMEOUT_MS)

    @field_validator("entities")
    @classmethod
    def known_entities(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",")]
        unknown = [name for name in names if name not in FEED_ENTITIES]
        if unknown:
            raise ValueError(f"unknown entities {unknown}; known: {', '.join(FEED_ENTITIES)}")
        return ",".join(dict.fromkeys(names))

    def entity_list(self) -> tuple[str, ...]:
        return tuple(self.entities.split(",")) if self.entities else ()


# -- encoding ----------------------------------------------------------------------------------------------


def encode_page(page: RawPage, fmt: str) -> bytes:
    """JSON: the rows' JSON joined, no document decoded. MessagePack: each row decoded by orjson and packed
    at once, so its objects die young (decoding a whole page first costs twice as much in garbage
    collection in a process with a large heap)."""
    if fmt == codec.JSON:
        return b'{"results":[%b],"last_seq":%d,"pending":%d}' % (
            b",".join([row[1] for row in page.rows]),
            page.last_seq,
            page.pending,
        )
    packer = msgpack.Packer(use_bin_type=True)
    pack, loads = ormsgpack.packb, orjson.loads
    return b"".join(
        [
            b"\x83\xa7results",  # a map of 3 entries; "results" as a fixstr of 7 bytes
            packer.pack_array_header(len(page.rows)),
            *[pack(loads(row[1])) for row in page.rows],
            pack("last_seq"),
            pack(page.last_seq),
            pack("pending"),
            pack(page.pending),
        ]
    )


def encode_lines(rows: list[RawRow], fmt: str) -> bytes:
    """Continuous: one result a line (NDJSON), or one msgpack map after another."""
    if fmt == codec.JSON:
        return b"\n".join([row[1] for row in rows]) + b"\n"
    pack, loads = ormsgpack.packb, orjson.loads
    return b"".join([pack(loads(row[1])) for row in rows])


def encode_end(last_seq: int, fmt: str) -> bytes:
    return (
        codec.encode_json_line({"last_seq": last_seq}) if fmt == codec.JSON else msgpack.packb({"last_seq": last_seq})
    )


HEARTBEAT = {codec.JSON: b"\n", codec.MSGPACK: msgpack.packb({})}


# -- the device registry -----------------------------------------------------------------------------------


class DeviceRecorder:
    """Records a device's last pull (`X-Device-ID`), for a device registered to the caller only.

    Writes are spaced: at most one every DEVICE_WRITE_SECONDS per device while it pages through a backlog,
    and always for a page that leaves it caught up (`pending` 0), so the registry is exact whenever a
    device is up to date and never costs a commit per page of an initial pull."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written: dict[tuple[int, str], float] = {}

    def record(
        self, db: Database, user_id: int, device_id: str, last_seq: int, caught_up: bool, version: str | None
    ) -> None:
        key = (user_id, device_id)
        now = time.monotonic()
        with self.lock:
            if not caught_up and now - self.written.get(key, 0.0) < DEVICE_WRITE_SECONDS:
                return
            self.written[key] = now
            if len(self.written) > 10_000:
                self.written.clear()
        values: dict[str, Any] = {
            "last_pull_at": utcnow(),
            "last_pulled_seq": last_seq,
            "version": Device.version + 1,
            "last_modified": utcnow(),
        }
        if version:
            values["app_version"] = version[:40]

        def work(uow: Any) -> None:
            uow.session.execute(
                update(Device).where(Device.device_id == device_id, Device.user_id == user_id).values(**values)
            )

        try:
            db.run(work)
        except Exception:  # the registry is bookkeeping: a failed write must not fail the pull
            log.exception("recording the pull of device %s failed", device_id)


devices = DeviceRecorder()


def _device_header(ctx: Ctx) -> str | None:
    value = (ctx.request.headers.get("x-device-id") or "").strip()
    return value[:100] or None


# -- GET /api/v1/sync/changes ------------------------------------------------------------------------------


@router.get(
    "/api/v1/sync/changes",
    query=ChangesQuery,
    auth=USER,
    errors=("validation_error",),
    extra_content=("application/x-ndjson",),
)
def changes(ctx: Ctx) -> Response:
    """The changes after `since` in the caller's scope, compacted (normal, longpoll or continuous)."""
    q: ChangesQuery = ctx.query
    scope = Scope(owner_filter(ctx.actor), q.entity_list())
    fmt = ctx.response_format
    device_id = _device_header(ctx)
    client_version = ctx.request.headers.get("x-client-version")
    db = ctx.db

    def remember(page: RawPage) -> None:
        if device_id is not None:
            devices.record(db, ctx.actor.id, device_id, page.last_seq, page.pending == 0, client_version)

    if q.feed == "continuous":
        media = NDJSON if fmt == codec.JSON else codec.MSGPACK
        return WatchedResponse(lambda: _continuous(db, q, scope, fmt, remember), media)
    page = fetch_page(db, q.since, q.limit, scope)
    if q.feed == "normal" or page.rows:
        remember(page)
        return Response(encode_page(page, fmt), media_type=fmt)
    return WatchedResponse(lambda: _longpoll(db, q, scope, fmt, page, remember), fmt, deferred=True)


async def _longpoll(
    db: Database, q: ChangesQuery, scope: Scope, fmt: str, page: RawPage, remember: Any
) -> AsyncIterator[bytes]:
    """Nothing new in scope: wait for a commit (any process), read again; answer as `normal` at timeout."""
    deadline = time.monotonic() + q.timeout / 1000
    watcher = watcher_for(db)
    while not page.rows and await watcher.wait_beyond(page.last_seq, deadline):
        page = await run_in_threadpool(fetch_page, db, page.last_seq, q.limit, scope)
    await run_in_threadpool(remember, page)
    yield encode_page(page, fmt)


async def _continuous(db: Database, q: ChangesQuery, scope: Scope, fmt: str, remember: Any) -> AsyncIterator[bytes]:
    """Pages of at most `limit` rows, heartbeats while idle, `{"last_seq": N}` at `timeout`. Memory stays at
    one page whatever the length of the stream."""
    start = time.monotonic()
    deadline = start + q.timeout / 1000
    beat = q.heartbeat / 1000 if q.heartbeat else None
    next_beat = start + beat if beat else deadline
    since, page = q.since, None
    watcher = watcher_for(db)
    while True:
        page = await run_in_threadpool(fetch_page, db, since, q.limit, scope)
        if page.rows:
            yield encode_lines(page.rows, fmt)
        since = page.last_seq
        now = time.monotonic()
        if now >= deadline:
            break
        if page.pending:
            continue
        await watcher.wait_beyond(since, min(deadline, next_beat))
        if beat and time.monotonic() >= next_beat:
            yield HEARTBEAT[fmt]
            next_beat = time.monotonic() + beat
    await run_in_threadpool(remember, page)
    yield encode_end(since, fmt)


# -- checkpoints -------------------------------------------------------------------------------------------


class CheckpointBody(Command):
    seq: StrictInt = Field(ge=0, le=2**63 - 1)


def _checkpoint_name(ctx: Ctx) -> str:
    name = str(ctx.path["name"])
    if not 1 <= len(name) <= 200:
        raise ValidationError("a checkpoint name has 1 to 200 characters", "name")
    return name


def _checkpoint_doc(row: Any) -> dict[str, Any]:
    return {"name": row.name, "seq": row.seq, "updated_at": rfc3339(row.updated_at)}


@router.get("/api/v1/sync/checkpoints/{name}", auth=USER, errors=("not_found",))
def get_checkpoint(ctx: Ctx) -> dict[str, Any]:
    """The caller's named checkpoint; 404 when it was never set."""
    name = _checkpoint_name(ctx)
    row = ctx.read(
        lambda s: s.execute(
            select(Checkpoint.name, Checkpoint.seq, Checkpoint.updated_at).where(
                Checkpoint.user_id == ctx.actor.id, Checkpoint.name == name
            )
        ).first()
    )
    if row is None:
        raise NotFound(f"checkpoint {name!r} was never set", {"name": name})
    return _checkpoint_doc(row)


@router.put("/api/v1/sync/checkpoints/{name}", body=CheckpointBody, auth=USER, errors=("validation_error",))
def put_checkpoint(ctx: Ctx) -> dict[str, Any]:
    """Set the caller's named checkpoint to `{"seq": N}` (created on first use)."""
    name = _checkpoint_name(ctx)
    seq: int = ctx.body.seq
    now = utcnow()
    values = {"user_id": ctx.actor.id, "name": name, "seq": seq, "updated_at": now}

    def work(uow: Any) -> None:
        table: Table = Checkpoint.__table__  # type: ignore[assignment]
        if ctx.db.dialect == "sqlite":
            lite = sqlite_dialect.insert(table).values(values)
            stmt: Any = lite.on_conflict_do_update(
                index_elements=["user_id", "name"], set_={"seq": seq, "updated_at": now}
            )
        else:
            stmt = mysql_dialect.insert(table).values(values).on_duplicate_key_update(seq=seq, updated_at=now)
        uow.session.execute(stmt)

    ctx.db.run(work)
    return {"name": name, "seq": seq, "updated_at": rfc3339(now)}


# -- GET /api/v1/sync/devices (admin) ----------------------------------------------------------------------


class DevicesQuery(PageQuery):
    user: int | None = Field(None, ge=1)


@router.get("/api/v1/sync/devices", query=DevicesQuery, auth=ADMIN, errors=("forbidden",))
def list_devices(ctx: Ctx) -> dict[str, Any]:
    """Every device: its user, last push and pull, lag behind the feed, change counts, app version, clock skew."""
    require_admin(ctx.actor, "the device registry")
    q: DevicesQuery = ctx.query

    def read(session: Any) -> dict[str, Any]:
        head = current_seq(session)
        stmt = select(Device).order_by(Device.id)
        if q.user is not None:
            stmt = stmt.where(Device.user_id == q.user)
        usernames = dict(session.execute(select(User.id, User.username)).all())
        return paginate(ctx, session, stmt, lambda d: _device_doc(d, usernames.get(d.user_id), head), q)

    return ctx.read(read)


def _device_doc(device: Device, username: str | None, head: int) -> dict[str, Any]:
    pulled = device.last_pulled_seq
    return {
        "device_id": device.device_id,
        "user": device.user_id,
        "username": username,
        "first_seen": rfc3339(device.first_seen),
        "last_push_at": rfc3339(device.last_push_at),
        "last_pull_at": rfc3339(device.last_pull_at),
        "last_pulled_seq": pulled,
        "lag": None if pulled is None else max(head - pulled, 0),
        "applied": device.applied_count,
        "duplicate": device.duplicate_count,
        "rejected": device.rejected_count,
        "app_version": device.app_version,
        "clock_skew": device.clock_skew_ms,
    }


__all__ = ["ChangesQuery", "encode_page", "fetch_current", "router"]
