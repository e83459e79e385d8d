"""What every `/couchdb/` endpoint shares: CouchDB's error shape, authentication, database names, revisions.

Revisions are computed, never stored: revision N of record `entity:id` is `N-` + md5("entity:id:N"), so the
ancestry of any revision is known without history (`_revisions` lists N, N-1, ... down to `REVS_LIMIT`
entries) and every process answers the same ids for the same record version, across restarts.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, select
from starlette.responses import Response

from domain.accounts.api import client_address
from domain.accounts.authn import resolve
from domain.accounts.models import User
from domain.accounts.policy import Actor
from domain.api import Ctx
from domain.errors import DomainError, InvalidCredentials, TooManyAttempts
from domain.memo import BoundedMemo

REVS_LIMIT = 1000
SOURCE_DB = "lpg"
QUEUE_PREFIX = "queue-"
RESULTS_PREFIX = "results-"
JSON = "application/json"


class CouchError(Exception):
    def __init__(self, status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.headers = status, error, reason, headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(raw, status_code=status, media_type=JSON, headers=headers)


def error_response(exc: CouchError) -> Response:
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", 'Basic realm="lpg-sync"')
    if exc.status in (429, 503):
        headers.setdefault("Retry-After", "1")
    return json_response({"error": exc.error, "reason": exc.reason}, exc.status, headers)


# -- database names --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbName:
    """`lpg` (the caller's scope), `queue-<device_id>` (a device's queue, written by replication) or
    `results-<device_id>` (one result document per queued change, read by replication)."""

    name: str
    kind: str  # "source" | "queue" | "results"
    device_id: str | None = None


def parse_db(name: str) -> DbName:
    if name == SOURCE_DB:
        return DbName(name, "source")
    for prefix, kind in ((QUEUE_PREFIX, "queue"), (RESULTS_PREFIX, "results")):
        if name.startswith(prefix) and 0 < len(name) - len(prefix) <= 100:
            device = name[len(prefix) :]
            if device.strip() and not any(ord(c) < 32 for c in device):
                return DbName(name, kind, device)
    raise CouchError(404, "not_found", "Database does not exist.")


# -- revisions -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def rev_hash(key: str, n: int) -> str:
    """A pure function of its arguments, so held in a bounded cache: a replicator asks for the same revision
    in `_changes`, then in `_bulk_get` (once to compare, once to write)."""
    return hashlib.md5(f"{key}:{n}".encode(), usedforsecurity=False).hexdigest()


def rev_of(key: str, n: int) -> str:
    return f"{n}-{rev_hash(key, n)}"


def revisions(key: str, n: int, limit: int = REVS_LIMIT) -> dict[str, Any]:
    return {"start": n, "ids": [rev_hash(key, k) for k in range(n, max(0, n - limit), -1)]}


def parse_rev(rev: Any) -> tuple[int, str] | None:
    if not isinstance(rev, str):
        return None
    number, _, digest = rev.partition("-")
    if not (number.isascii() and number.isdigit()) or not digest or int(number) < 1:
        return None
    return int(number), digest


def is_ancestor_or_self(key: str, n: int, rev: Any) -> bool:
    """Whether `rev` is revision `n` of `key` or one of its ancestors."""
    parsed = parse_rev(rev)
    return parsed is not None and parsed[0] <= n and parsed[1] == rev_hash(key, parsed[0])


# -- authentication: the bearer token (with its session) or HTTP Basic ---------------------------------------


@dataclass(frozen=True)
class _Verified:
    user_id: int
    password_hash: str


# Argon2 costs ~50 ms a check and a replicator sends Basic credentials on every request. A check that
# succeeded is remembered by a digest of (name, password, key), with the password hash it was checked
# against; it is used only while the user's CURRENT row (read on every request) is active and still has
# that very hash: a password reset or a deactivation ends it at once, in every process.
VERIFIED_MAX = 10_000
_verified: BoundedMemo[str, _Verified] = BoundedMemo(VERIFIED_MAX)


def authenticate(ctx: Ctx) -> Actor:
    """`domain.accounts.authn.resolve` (bearer with its session check, or Basic through the login's throttle
    and password check), with a Basic check that succeeded remembered as described above."""
    header = ctx.request.headers.get("authorization")
    try:
        scheme, _, value = (header or "").strip().partition(" ")
        if scheme.lower() == "basic" and value.strip():
            key = _memo_key(ctx, value.strip())
            user = _remembered(ctx, key)
            if user is None:
                user = resolve(ctx.db, ctx.settings, header, client_address(ctx), allow_basic=True)
                _remember(ctx, key, user)
        else:
            user = resolve(ctx.db, ctx.settings, header, client_address(ctx), allow_basic=True)
    except InvalidCredentials:
        raise CouchError(401, "unauthorized", "Name or password is incorrect.") from None
    except TooManyAttempts as exc:
        retry = str(exc.details.get("retry_after", 60))
        raise CouchError(429, "too_many_requests", exc.message, {"Retry-After": retry}) from None
    except DomainError as exc:
        if exc.status == 503:
            raise
        raise CouchError(401, "unauthorized", exc.message) from None
    ctx.request.state.user_id = user.id  # for the access log
    return user


def _memo_key(ctx: Ctx, value: str) -> str:
    return hashlib.sha256(f"{value}\0{ctx.settings.secret_key}".encode()).hexdigest()


# Built once: every Basic request of a replication reads its user's row, and a statement built per request
# costs SQLAlchemy a cache-key generation each time (~3% of a small request's CPU).
_USER_NOW = select(User.id, User.username, User.role, User.active, User.password_hash).where(User.id == bindparam("id"))


def _remembered(ctx: Ctx, key: str) -> Actor | None:
    known = _verified.get(key)
    if known is None:
        return None
    row = ctx.db.read(lambda s: s.execute(_USER_NOW, {"id": known.user_id}).first())
    if row is not None and row.active and row.password_hash == known.password_hash:
        return Actor(row.id, row.username, row.role)
    _verified.forget(key)
    return None


def _remember(ctx: Ctx, key: str, user: Actor) -> None:
    hashed = ctx.db.read(lambda s: s.execute(select(User.password_hash).where(User.id == user.id)).scalar_one())
    _verified.put(key, _Verified(user.id, hashed))


def couch(handler: Callable[[Ctx, Actor, DbName | None], Any]) -> Callable[[Ctx], Any]:
    """Authenticate, resolve `{db}`, and answer every refusal in CouchDB's shape."""

    def wrapped(ctx: Ctx) -> Any:
        try:
            actor = authenticate(ctx)
            name = ctx.path.get("db")
            db = parse_db(str(name)) if name is not None else None
            result = handler(ctx, actor, db)
            return result if isinstance(result, Response) else json_response(result)
        except CouchError as exc:
            return error_response(exc)
        except DomainError as exc:
            names = {403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large"}
            names |= {429: "too_many_requests", 503: "service_unavailable"}
            headers = {"Retry-After": str(exc.details["retry_after"])} if "retry_after" in exc.details else {}
            error = names.get(exc.status, "bad_request")
            return error_response(CouchError(exc.status, error, exc.message, headers))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
