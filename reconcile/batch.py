"""Applying a device's batch of changes: the heart of the sync protocol.

The steps, numbered as in the code (docs/sync-protocol.md "Push"):

1. The device's owner (registered to the user on its first push; another user is refused), read with
2. the device's idempotency records and open rejections for every temp id the batch names (one query).
   The device row is not locked: two pushes from one device at once (a retry racing its original) are
   told apart by the idempotency records' unique key at step 4, and the loser runs again (`Resend`),
   seeing the winner's changes as duplicates.
3. For each change, in order: idempotency (same key + same content -> `duplicate` with the stored
   result; other content -> `idempotency_key_reuse`), op lookup, temp-id references (this batch's id map,
   then the persistent one; a refused one -> `dependency_rejected` naming the cause, an unknown one ->
   `unknown_reference`), validation into the op's command, then the one service call.
4. Write the effects with multi-row statements: the services' rows (one ORM flush), the idempotency
   records, the rejection list, the device registry; the unit of work then writes feed and audit rows.
5. Commit (or, for a dry run, roll back) and answer with `id_map`, `results`, `server_ts`, `last_seq`.

Each change is its own atomic unit without paying a SAVEPOINT per change: services check everything
before they mutate anything (check-then-act), so a refused change has changed nothing and the batch goes
on in the same transaction. When that cannot be trusted (a service added records or recorded changes
before refusing, or the database refused the flush), the whole batch is rolled back and run again with a
SAVEPOINT around each change: slower, and exact. With `atomic: true` the first refusal rolls back all.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, NoReturn

import orjson
from sqlalchemy import bindparam, func, insert, literal, null, select, union_all, update
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

import reconcile.tripwire  # noqa: F401  (counts the ORM objects a change adds: UnitState.added)
from domain import dbfaults
from domain.accounts.authn import TokenUser, checked_user, user_status
from domain.accounts.models import Device, User
from domain.accounts.policy import Actor
from domain.clock import rfc3339, utcnow
from domain.db import Database, UnitOfWork, plain_rows
from domain.errors import (
    DependencyRejected,
    DomainError,
    Forbidden,
    IdempotencyKeyReuse,
    InvalidState,
    UnknownReference,
    ValidationError,
)
from domain.feed.services import current_seq
from domain.ledger import (
    RowMoved,
    flush_all,
    given,
    ledger_of,
    preview_numbers,
    settle_audits,
    unit_state,
    update_one_after_numbers,
    write_after_numbers,
)
from domain.service import Call, Outcome
from domain.settings import Settings
from domain.wire import parse, refuse_control_characters
from reconcile.envelope import Change, Envelope
from reconcile.models import AppliedChange, RejectedChange
from reconcile.ops import OPS, Op, references_of

log = logging.getLogger("lpg.reconcile")
CONFIRM_OPS = frozenset({"transaction.create", "transaction.confirm"})  # the ops that can issue an invoice

# Called once a batch has committed (never for a dry run or a refused atomic batch) with the ids of the
# invoices its confirms issued. Duplicates issue nothing: their invoice was handed over when first applied.
# (Invoice e-mail does not use it: the confirm writes its outbox row in the batch's own transaction.)
AfterCommit = Callable[[Database, list[int]], object]


class Known(NamedTuple):
    """What an earlier batch of this device recorded for a temp id (a `sync_applied` row)."""

    op: str
    fingerprint: str
    entity: str | None
    entity_id: int | None
    result: str


class Fallback(Exception):
    """The fast path cannot vouch for this batch: run it again with a savepoint per change."""


class Resend(Exception):
    """Another push of the same device committed some of this batch's changes first: run it again, and
    they answer as duplicates (what the device's own resend would see)."""


RESENDS = 5  # a device's own pushes racing each other; more than this many in a row is a bug


def fingerprint(change: Change) -> str:
    """Equal after decoding means the same change: key order and encoding do not matter."""
    return hashlib.sha256(orjson.dumps([change.op, change.data], option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Result:
    change: Change
    fingerprint: str
    status: str = "rejected"
    entity: str | None = None
    outcome: Outcome | None = None
    version: int | None = None
    number: str | None = None
    server_ts: datetime | None = None
    error: DomainError | None = None
    stored: dict[str, Any] | None = None  # a duplicate's stored result
    twin: Result | None = None  # a duplicate of a change applied earlier in this same batch
    wire: dict[str, Any] | None = None  # the answer, fixed before the unit ends (see `Runner.finish`)

    def to_wire(self) -> dict[str, Any]:
        if self.wire is not None:
            return self.wire
        if self.status == "duplicate":
            stored = self.twin.to_wire() if self.twin is not None else self.stored
            assert stored is not None
            return {**stored, "status": "duplicate"}
        if self.status == "rejected":
            assert self.error is not None
            return {"client_temp_id": self.change.client_temp_id, "status": "rejected", "error": self.error.to_dict()}
        assert self.outcome is not None
        body: dict[str, Any] = {
            "client_temp_id": self.change.client_temp_id,
            "status": "applied",
            "entity": self.entity,
            "id": self.outcome.id,
        }
        if self.number:
            body["number"] = self.number
        body["version"] = self.version
        body["server_ts"] = rfc3339(self.server_ts)
        if self.outcome.warnings:
            body["warnings"] = self.outcome.warnings
        if self.outcome.related:
            body["related"] = {name: _ref(obj) for name, obj in self.outcome.related.items()}
        if self.outcome.conflict:
            body["conflict"] = self.outcome.conflict
        return body


def _ref(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    ref: dict[str, Any] = {"id": obj.id}
    if getattr(obj, "number", None):
        ref["number"] = obj.number
    return ref


@dataclass
class Runner:
    """One attempt at one batch, inside one unit of work."""

    uow: UnitOfWork
    actor: Actor
    envelope: Envelope
    batch_id: str
    savepoints: bool
    resolver: int | None = None  # who resolves open rejections (the replaying admin, else the actor)
    results: list[Result] = field(default_factory=list)
    applied: dict[str, Result] = field(default_factory=dict)  # this batch's id map
    refused: dict[str, str] = field(default_factory=dict)  # temp id -> error code, this batch
    known: dict[str, Known] = field(default_factory=dict)  # earlier batches' records
    open_rejections: dict[str, str] = field(default_factory=dict)
    committed: bool = False
    last_seq: int | None = None  # the feed's seq at this batch's commit, known without another unit
    device_owner: int | None = None  # the device's registered user, read with the idempotency records

    @property
    def session(self) -> Session:
        return self.uow.session

    @property
    def settings(self) -> Settings:
        return self.uow.settings

    # -- 1. the device -----------------------------------------------------------------------------

    def lock_device(self, now: datetime) -> Device:
        """The device row, locked; created and registered to this user on its first push."""
        device_id = self.envelope.device_id
        locked = select(Device).where(Device.device_id == device_id).with_for_update()
        device = self.session.execute(locked).scalar_one_or_none()  # one round trip once registered
        if device is None:  # the first push: an atomic upsert (two first pushes may race), then the lock
            values = {
                "device_id": device_id,
                "user_id": self.actor.id,
                "first_seen": now,
                "version": 1,
                "last_modified": now,
            }
            if self.session.get_bind().dialect.name == "sqlite":
                self.session.execute(sqlite_dialect.insert(Device).values(values).on_conflict_do_nothing())
            else:
                stmt = mysql_dialect.insert(Device).values(values)
                self.session.execute(stmt.on_duplicate_key_update({"id": Device.__table__.c.id}))
            device = self.session.execute(locked).scalar_one()
        if device.user_id != self.actor.id:
            raise Forbidden(
                f"device {device_id} is registered to another user",
                {"device_id": device_id},
            )
        return device

    # -- 2. what this device pushed before ------------------------------------------------------------

    def prefetch(self, token: TokenUser | None = None) -> None:
        """One round trip: the device's owner, and its idempotency records and open rejections for every
        temp id the batch names (its changes' keys and the temp ids they refer to); with `token`, the
        pusher's user and login session too (`self.actor`, or the refusal), checked in the same statement."""
        names: set[str] = set()
        for change in self.envelope.changes:
            names.add(change.client_temp_id)
            op = OPS.get(change.op)
            if op is None:
                continue
            try:
                refs = references_of(op)
            except (ImportError, AttributeError):
                continue
            for field_name in refs:
                value = change.data.get(field_name)
                if isinstance(value, str):
                    names.add(value)
        device_id = self.envelope.device_id
        for number, chunk in enumerate(_chunks(sorted(names), 500) or [[]]):
            # One round trip: the applied records and the open rejections of these temp ids together (and,
            # with the first chunk, the device's owner).
            user = None if token is None or number else token.family is not None
            query = _PREFETCH[(number == 0, bool(chunk), user)]
            params: dict[str, Any] = {"device_id": device_id, "names": chunk}
            if user is not None:
                params.update(user_id=token.user_id, family=token.family)  # type: ignore[union-attr]
            pusher = None
            latest: dict[str, int] = {}  # no ORDER BY (MariaDB would sort the union in a temporary table)
            for kind, _id, temp_id, op, fp_or_code, entity, entity_id, result in plain_rows(
                self.session, query, params
            ):
                if kind == 0:
                    self.known[temp_id] = Known(op, fp_or_code, entity, entity_id, result)
                elif kind == 1:
                    if _id > latest.get(temp_id, 0):  # the latest open rejection of a temp id wins
                        latest[temp_id] = _id
                        self.open_rejections[temp_id] = fp_or_code
                elif kind == 2:
                    self.device_owner = entity_id
                else:
                    pusher = (_id, temp_id, op, fp_or_code)
            if user is not None:
                self.actor = checked_user(pusher)

    def check_device(self, now: datetime) -> None:
        """The device must be registered to this user; its first push registers it (an atomic upsert: two
        first pushes may race). Its row is not locked here: see `finish` for why none is needed."""
        if self.device_owner is None:
            self.device_owner = self.lock_device(now).user_id
        if self.device_owner != self.actor.id:
            device_id = self.envelope.device_id
            raise Forbidden(f"device {device_id} is registered to another user", {"device_id": device_id})

    # -- 3. each change --------------------------------------------------------------------------------

    def run(self) -> None:
        for change in self.envelope.changes:
            result = self.apply(change)
            self.results.append(result)
            if result.status == "rejected":
                self.refused[change.client_temp_id] = result.error.code  # type: ignore[union-attr]
                if self.envelope.atomic:
                    return

    def apply(self, change: Change) -> Result:
        result = Result(change, fingerprint(change))
        temp_id = change.client_temp_id
        earlier = self.applied.get(temp_id)
        if earlier is not None:  # the same key twice in one batch
            if earlier.fingerprint == result.fingerprint:
                result.status, result.twin, result.entity = "duplicate", earlier, earlier.entity
                return result
            return self._refuse(
                result,
                IdempotencyKeyReuse(
                    f"{temp_id} was already used in this batch for another change", {"client_temp_id": temp_id}
                ),
            )
        known = self.known.get(temp_id)
        if known is not None:
            if known.fingerprint == result.fingerprint:
                result.status, result.stored = "duplicate", orjson.loads(known.result)
                result.entity = known.entity
                return result
            return self._refuse(
                result,
                IdempotencyKeyReuse(
                    f"{temp_id} was already applied with other content", {"client_temp_id": temp_id, "op": known.op}
                ),
            )
        op = OPS.get(change.op)
        if op is None:
            return self._refuse(result, ValidationError(f"unknown op {change.op!r}", "op", {"supported": sorted(OPS)}))
        try:
            refuse_control_characters(change.data, "data.")  # before temp ids are looked up
            data = self.resolve(op, change.data)
            command = parse(op.command_class, data, prefix="data.")
        except DomainError as exc:
            return self._refuse(result, exc)
        return self.call(op, command, result)

    def resolve(self, op: Op, data: dict[str, Any]) -> dict[str, Any]:
        """Replace temp ids by permanent ids: this batch's id map first, then the persistent one."""
        refs = references_of(op)
        resolved = dict(data)
        for field_name, entity in refs.items():
            value = data.get(field_name)
            if isinstance(value, str):
                resolved[field_name] = self.permanent_id(value, entity, field_name)
        return resolved

    def permanent_id(self, temp_id: str, entity: str, field_name: str) -> int:
        if temp_id in self.applied:
            found = self.applied[temp_id]
            self._same_entity(found.entity, entity, temp_id, field_name)
            assert found.outcome is not None
            settle_audits(self.session)  # the record may change now: freeze what was said about it so far
            return found.outcome.id  # a new record's id flushes the unit (Outcome.id)
        if temp_id in self.refused:
            raise DependencyRejected(
                f"{temp_id} was refused, so this change that depends on it is refused too",
                {"field": f"data.{field_name}", "cause": {"client_temp_id": temp_id, "code": self.refused[temp_id]}},
            )
        known = self.known.get(temp_id)
        if known is not None and known.entity_id is not None:
            self._same_entity(known.entity, entity, temp_id, field_name)
            return known.entity_id
        if temp_id in self.open_rejections:
            raise DependencyRejected(
                f"{temp_id} was refused earlier, so this change that depends on it is refused too",
                {
                    "field": f"data.{field_name}",
                    "cause": {"client_temp_id": temp_id, "code": self.open_rejections[temp_id]},
                },
            )
        raise UnknownReference(
            f"{temp_id} is not a record of this device: push the change that creates it first",
            {"field": f"data.{field_name}", "client_temp_id": temp_id},
        )

    @staticmethod
    def _same_entity(found: str | None, wanted: str, temp_id: str, field_name: str) -> None:
        if found != wanted:
            raise ValidationError(
                f"{temp_id} is a {found}, not a {wanted}", f"data.{field_name}", {"client_temp_id": temp_id}
            )

    def call(self, op: Op, command: Any, result: Result) -> Result:
        change = result.change
        now = utcnow()
        call = Call(
            self.session,
            self.actor,
            self.settings,
            device_id=self.envelope.device_id,
            client_temp_id=change.client_temp_id,
            batch_id=self.batch_id,
            now=now,
        )
        state = unit_state(self.session)
        mark = state.snapshot()  # the savepoint-free fast path vouches for a refusal against it
        savepoint = self.uow.savepoint() if self.savepoints else None
        try:
            outcome = op.run(call, command)
            self.settle(state.ledger.audits[mark[0][1] :])
            if savepoint is not None:
                savepoint.commit()
        except DomainError as exc:
            if savepoint is not None:
                savepoint.rollback()
            elif not state.unchanged_since(mark):
                raise Fallback(f"{op.name} refused after changing state") from exc
            return self._refuse(result, exc)
        except SQLAlchemyError as exc:
            # Only the database's refusal of this change's data (a unique key, a CHECK, a value out of
            # range) is a refusal of the change. A fault (a lost connection, a deadlock) or SQLAlchemy's
            # state after one (PendingRollbackError, ResourceClosedError) runs the whole batch again; it
            # never refuses.
            if savepoint is None or not dbfaults.refuses_data(exc):
                raise
            savepoint.rollback()
            log.warning("the database refused %s %s: %s", op.name, change.client_temp_id, exc)
            return self._refuse(
                result,
                InvalidState("the database refused this change", {"reason": str(getattr(exc, "orig", exc))[:300]}),
            )
        result.status, result.entity, result.outcome = "applied", outcome.entity, outcome
        result.version, result.number, result.server_ts = outcome.version, outcome.number, now
        self.applied[change.client_temp_id] = result
        return result

    def settle(self, audits: list[Any]) -> None:
        """Freeze audit snapshots before a later change of the batch can touch the same record.

        A change whose entries all describe records it created itself may wait: such a record can only be
        changed again by a later change that names its temp id, and `permanent_id` settles before that.
        Waiting lets a batch of new records be written with one multi-row INSERT instead of one a change.
        """
        if audits and all(getattr(a.target, "id", 0) is None for a in audits):
            return
        settle_audits(self.session)

    def _refuse(self, result: Result, error: DomainError) -> Result:
        field = error.details.get("field")
        if isinstance(field, str) and field and field != "op" and not field.startswith(("data.", "data[")):
            # A service names the command's field (`meter_rate`); in a push, fields live under `data`.
            error.details["field"] = "data." + field
        result.status, result.error = "rejected", error
        return result

    # -- 4. effects -------------------------------------------------------------------------------------

    def finish(self, now: datetime, *, final: bool = True) -> None:
        """Flush the services' rows, then write idempotency records, rejections and the device counters.

        Two pushes of one device at once (a resend racing its original) are told apart here, not by a lock
        taken at the start: both may apply the same change, but the idempotency records' unique key
        (device, temp id) lets only one commit it. The other's INSERT waits for that commit, fails, and its
        batch runs again (`Resend`), now seeing those changes as duplicates. SQLite has one writer at a
        time, so there the second push simply starts after the first."""
        # Change by change (savepoints), each change's rows were flushed in its savepoint; otherwise the
        # stock rows are written with the commit's locked writes (a refusal there falls back, see `_run`).
        # A batch that commits next (not a dry run) may leave its new rows' INSERTs to the commit's statement
        # as well: their ids are tokens until then, in the answers too (`number` puts the ids in).
        flush_all(self.session, late=not self.savepoints, id_tokens=final and not self.savepoints)
        for r in self.results:  # every record has its id now; after a rollback (dry run) none may be read
            r.wire = r.to_wire()
        applied = [r for r in self.results if r.status == "applied"]
        if applied:
            rows = [
                {
                    "device_id": self.envelope.device_id,
                    "client_temp_id": r.change.client_temp_id,
                    "op": r.change.op,
                    "fingerprint": r.fingerprint,
                    "entity": r.entity,
                    "entity_id": r.outcome.id,  # type: ignore[union-attr]
                    "result": orjson.dumps(r.to_wire()).decode(),
                    "created_at": now,
                }
                for r in applied
            ]
            # Core, no ORM bookkeeping per row; a batch that numbered documents writes its answers under
            # the late lock, with the numbers in them (`domain.ledger.write_after_numbers`).
            write_after_numbers(self.session, _INSERT_APPLIED, rows)
            self.resolve_rejections([r.change.client_temp_id for r in applied], now)
        self.write_rejections([r for r in self.results if r.status == "rejected"], now)
        self.count_on_device(now)

    def number(self, numbers: dict[str, str], ids: dict[int, int] | None = None) -> None:
        """The answers with the document numbers and new rows' ids the commit gave (tokens until then)."""
        if numbers or ids:
            for r in self.results:
                if r.wire is not None:
                    r.wire = given(r.wire, numbers, ids or {})

    def count_on_device(self, now: datetime) -> None:
        """The device registry's counters and stamps, moved by one UPDATE (no read of the row before it)."""
        counts, envelope = self.counts(), self.envelope
        skew = None
        if envelope.device_time is not None:
            skew = int((envelope.device_time - now).total_seconds() * 1000)
        # Under the late lock with the other locked writes (no round trip of its own on MariaDB); it must
        # find the device row still the pusher's, or the push runs again (`RowMoved` -> `Resend`).
        update_one_after_numbers(
            self.session,
            _COUNT_ON_DEVICE,
            {
                "applied": counts["applied"],
                "duplicate": counts["duplicate"],
                "rejected": counts["rejected"],
                "now": now,
                "app_version": envelope.app_version or None,
                "skew": skew,
                "b_device_id": envelope.device_id,
                "b_user_id": self.actor.id,
            },
            f"device {self.envelope.device_id} changed while its batch ran",
        )

    def resolve_rejections(self, temp_ids: list[str], now: datetime) -> None:
        open_ids = [t for t in temp_ids if t in self.open_rejections]
        for chunk in _chunks(open_ids, 500):
            self.session.execute(
                update(RejectedChange)
                .where(
                    RejectedChange.device_id == self.envelope.device_id,
                    RejectedChange.client_temp_id.in_(chunk),
                    RejectedChange.resolved_at.is_(None),
                )
                .values(resolved_at=now, resolved_by=self.resolver or self.actor.id)
            )

    def write_rejections(self, rejected: list[Result], now: datetime) -> None:
        rows = [
            {
                "device_id": self.envelope.device_id,
                "client_temp_id": r.change.client_temp_id,
                "op": r.change.op[:40],
                "payload": orjson.dumps(r.change.raw).decode(),
                "error_code": r.error.code,  # type: ignore[union-attr]
                "error": orjson.dumps(r.error.to_dict()).decode(),  # type: ignore[union-attr]
                "user_id": self.actor.id,
                "created_at": now,
            }
            for r in rejected
        ]
        for chunk in _chunks(rows, 400):
            self.session.execute(_INSERT_REJECTED, chunk)

    def issued_invoices(self) -> list[int]:
        """The invoices this batch's confirms issued, in batch order."""
        ids = []
        for r in self.results:
            if r.status == "applied" and r.change.op in CONFIRM_OPS and r.outcome is not None:
                invoice = r.outcome.related.get("invoice")
                if invoice is not None:
                    ids.append(int(invoice.id))
        return ids

    def counts(self) -> dict[str, int]:
        counts = {"applied": 0, "duplicate": 0, "rejected": 0}
        for r in self.results:
            counts[r.status] += 1
        return counts


def _prefetch_queries() -> dict[tuple[bool, bool], Any]:
    """The prefetch's statements, built once: (with the device's owner, with temp ids) -> statement."""
    applied, rejected, devices = AppliedChange.__table__.c, RejectedChange.__table__.c, Device.__table__.c
    device_id, names = bindparam("device_id"), bindparam("names", expanding=True)
    owner = select(literal(2).label("kind"), devices.id, null(), null(), null(), null(), devices.user_id, null()).where(
        devices.device_id == device_id
    )
    records = select(
        literal(0).label("kind"),
        applied.id,
        applied.client_temp_id,
        applied.op,
        applied.fingerprint,
        applied.entity,
        applied.entity_id,
        applied.result,
    ).where(applied.device_id == device_id, applied.client_temp_id.in_(names))
    refusals = select(
        literal(1).label("kind"),
        rejected.id,
        rejected.client_temp_id,
        rejected.op,
        rejected.error_code,
        null(),
        null(),
        null(),
    ).where(rejected.device_id == device_id, rejected.client_temp_id.in_(names), rejected.resolved_at.is_(None))
    users = User.__table__.c
    queries: dict[tuple[bool, bool, bool | None], Any] = {(False, True, None): union_all(records, refusals)}
    for with_session in (None, False, True):  # the pusher's user: not asked, without or with its session
        parts = [owner]
        if with_session is not None:
            status = user_status(with_session)
            pusher = select(literal(3), users.id, users.username, users.role, status, null(), null(), null())
            parts.append(pusher.where(users.id == bindparam("user_id")))
        queries[(True, False, with_session)] = union_all(*parts) if len(parts) > 1 else owner
        queries[(True, True, with_session)] = union_all(*parts, records, refusals)
    return queries


_PREFETCH = _prefetch_queries()
ANONYMOUS = Actor(0, "", "")  # no user has id 0: a Runner's actor before its prefetch read the pusher
_INSERT_APPLIED = insert(AppliedChange.__table__)  # Core, built once: no ORM bookkeeping per row
_INSERT_REJECTED = insert(RejectedChange.__table__)


def _count_on_device_statement() -> Any:
    """The device registry's one UPDATE per push, built once (an absent app version or device time keeps
    the stored one)."""
    column = Device.__table__.c
    return (
        update(Device.__table__)
        .where(column.device_id == bindparam("b_device_id"), column.user_id == bindparam("b_user_id"))
        .values(
            applied_count=column.applied_count + bindparam("applied"),
            duplicate_count=column.duplicate_count + bindparam("duplicate"),
            rejected_count=column.rejected_count + bindparam("rejected"),
            last_push_at=bindparam("now"),
            version=column.version + 1,
            last_modified=bindparam("now"),
            app_version=func.coalesce(bindparam("app_version", type_=column.app_version.type), column.app_version),
            clock_skew_ms=func.coalesce(bindparam("skew", type_=column.clock_skew_ms.type), column.clock_skew_ms),
        )
    )


_COUNT_ON_DEVICE = _count_on_device_statement()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- the protocol, end to end ----------------------------------------------------------------------------


# Who pushes: the actor, a loader run as the batch unit's first statement, or a bearer token's user
# (`TokenUser`), whose user and login session the prefetch checks in its own statement (`checked_user`).
Pusher = Actor | TokenUser | Callable[[Session], Actor]


def apply_batch(
    db: Database,
    actor: Pusher,
    envelope: Envelope,
    *,
    dry_run: bool = False,
    batch_id: str | None = None,
    resolver: int | None = None,
    after_commit: AfterCommit | None = None,
) -> dict[str, Any]:
    """Run a push (or a replay) and build the response. Deadlock victims are retried whole. Once the batch
    has committed, `after_commit` gets the invoices its confirms issued (outside the transaction)."""
    batch_id = batch_id or uuid.uuid4().hex
    # A push is idempotent (client_temp_ids): after a transient fault, and also after a connection lost
    # during COMMIT, running the whole batch again is what the device's resend would do; a batch that did
    # commit then answers its changes as duplicates with the same ids.
    runner, response = db.retrying(lambda: _attempt(db, actor, envelope, dry_run, batch_id, resolver), idempotent=True)
    issued = runner.issued_invoices() if runner.committed else []
    if issued and after_commit is not None:
        try:
            after_commit(db, issued)
        except Exception:  # the batch has committed: its answer must reach the device regardless
            log.exception("batch %s: the after-commit hook failed for invoices %s", batch_id, issued)
    return response


def _attempt(
    db: Database, actor: Pusher, envelope: Envelope, dry_run: bool, batch_id: str, resolver: int | None
) -> tuple[Runner, dict[str, Any]]:
    now = utcnow()
    savepoints = False
    for resend in range(RESENDS + 1):
        try:
            runner = _run(db, actor, envelope, dry_run, batch_id, resolver, now, savepoints=savepoints)
            return runner, _response(db, runner, now, dry_run)
        except Fallback as exc:
            if savepoints:
                raise RuntimeError(f"batch {batch_id}: fell back twice") from exc
            log.info("batch %s: %s; applying change by change", batch_id, exc)
            savepoints = True
        except Resend as exc:
            if resend == RESENDS:
                raise RuntimeError(f"batch {batch_id}: {exc}, {RESENDS + 1} times") from exc
            log.info("batch %s: %s; running it again", batch_id, exc)
    raise AssertionError("unreachable")


def _run(
    db: Database,
    actor: Pusher,
    envelope: Envelope,
    dry_run: bool,
    batch_id: str,
    resolver: int | None,
    now: datetime,
    *,
    savepoints: bool,
) -> Runner:
    with db.unit() as uow:
        token = actor if isinstance(actor, TokenUser) else None
        # A token's user is checked by the prefetch (ANONYMOUS until then); a loader runs as the first statement.
        pusher = ANONYMOUS if token is not None else actor(uow.session) if callable(actor) else actor
        runner = Runner(uow, pusher, envelope, batch_id, savepoints, resolver)
        runner.prefetch(token)  # 1. and 2.
        runner.check_device(now)
        runner.run()  # 3.
        atomic_failed = envelope.atomic and any(r.status == "rejected" for r in runner.results)
        if atomic_failed:
            _roll_back_all(runner)
            uow.rollback()
            if not dry_run:
                _record_atomic_refusal(db, runner.actor, envelope, runner, now)
            return runner
        try:
            runner.finish(now, final=not dry_run)  # 4.
        except DBAPIError as exc:
            _refused_writes(db, exc, savepoints)
        if dry_run:
            runner.number(preview_numbers(uow.session))  # what the numbers would be now
            uow.rollback()
        else:
            # The answer's last_seq: the feed counter this commit's ledger locked and moved; read here,
            # inside the unit, when the batch records nothing for the feed (all duplicates or refusals).
            quiet = not ledger_of(uow.session).changes
            before = current_seq(uow.session) if quiet else None
            try:
                uow.commit()  # 5.
            except RowMoved as exc:
                raise Resend(str(exc)) from exc
            except DBAPIError as exc:  # the locked writes (answers, stock rows, lines) go with the commit
                _refused_writes(db, exc, savepoints)
            runner.committed = True
            runner.last_seq = before if quiet else unit_state(uow.session).last_seq
            runner.number(unit_state(uow.session).numbered, unit_state(uow.session).ids)
    return runner


def _refused_writes(db: Database, exc: DBAPIError, savepoints: bool) -> NoReturn:
    """The batch's writes failed, at its last flush or with the commit's locked writes. A fault goes up (the
    batch runs again whole); a racing push of the same device that committed these changes first makes the
    batch run again (`Resend`, answering duplicates); any other refusal runs it change by change
    (`Fallback`), where only the change whose row the database refuses (a unique key, a CHECK) is refused."""
    if db.is_retryable(exc):
        raise exc
    if isinstance(exc, IntegrityError) and _applied_twice(exc):
        raise Resend("another push of this device applied some of its changes first") from exc
    if savepoints:
        raise exc
    raise Fallback(f"the database refused the batch's writes: {exc.orig}") from exc


def _applied_twice(exc: IntegrityError) -> bool:
    """The idempotency records' unique key (device, temp id) refused a row: a concurrent push of the same
    device committed that change first."""
    if (exc.statement or "").lstrip().upper().startswith("INSERT INTO SYNC_APPLIED"):
        return True
    # Written under the late lock with the other writes (one compound statement on MariaDB): the key says.
    message = str(exc.orig)
    return "uq_sync_applied_device_id_client_temp_id" in message or "sync_applied.device_id" in message


def _roll_back_all(runner: Runner) -> None:
    """`atomic: true`: one refusal undoes the batch; every other change says it was rolled back."""
    culprit = next(r for r in runner.results if r.status == "rejected")
    cause = {"client_temp_id": culprit.change.client_temp_id, "code": culprit.error.code}  # type: ignore[union-attr]
    # The changes after the culprit were never evaluated. Counted by position, never by key: a batch may
    # name one client_temp_id several times, and every change answers once, in order.
    pending = [Result(c, fingerprint(c)) for c in runner.envelope.changes[len(runner.results) :]]
    runner.results.extend(pending)
    for result in runner.results:
        if result is culprit or (result.status == "duplicate" and result.twin is None):
            continue  # a duplicate of an earlier batch's change stays one: that change is committed
        result.status, result.outcome = "rejected", None
        result.error = DomainError(
            f"the atomic batch was rolled back because {cause['client_temp_id']} was refused",
            {"cause": cause},
            code="rolled_back",
        )


def _record_atomic_refusal(db: Database, actor: Actor, envelope: Envelope, runner: Runner, now: datetime) -> None:
    """The refused atomic batch goes to the rejection list (its own small unit, after the rollback)."""
    with db.unit() as uow:
        writer = Runner(uow, actor, envelope, runner.batch_id, False)
        device = writer.lock_device(now)
        writer.results = runner.results
        writer.write_rejections([r for r in runner.results if r.status == "rejected"], now)
        counts = writer.counts()
        device.rejected_count += counts["rejected"]
        device.duplicate_count += counts["duplicate"]
        device.last_push_at = now
        device.touch(now)
        uow.commit()


def _response(db: Database, runner: Runner, now: datetime, dry_run: bool) -> dict[str, Any]:
    results = [r.to_wire() for r in runner.results]
    id_map: dict[str, Any] = {}
    for wire in results:
        if wire["status"] in ("applied", "duplicate"):
            entry = {"entity": wire["entity"], "id": wire["id"]}
            if wire.get("number"):
                entry["number"] = wire["number"]
            id_map[wire["client_temp_id"]] = entry
    last_seq = runner.last_seq if runner.last_seq is not None else _last_seq(db, runner)
    response: dict[str, Any] = {"server_ts": rfc3339(now), "id_map": id_map, "results": results, "last_seq": last_seq}
    if dry_run:
        response["dry_run"] = True
    return response


def _last_seq(db: Database, runner: Runner) -> int:
    """The feed's current seq for the answer. Read after the commit, so a fault here must not turn a
    committed batch into an error: then the seq the batch's own ledger write reached is answered (every
    change at or below it was committed by then), or 0 when the batch wrote no feed row (a client that
    pulls from 0 receives everything again: more data, never a gap)."""
    try:
        return db.read(current_seq)
    except Exception as exc:
        if not runner.committed or dbfaults.classify(exc) is None:
            raise
        fallback = unit_state(runner.uow.session).last_seq or 0
        log.warning("batch %s committed; last_seq read failed (%s): answering %d", runner.batch_id, exc, fallback)
        return fallback
