"""Push, replay and the rejection list: `/api/v1/sync/push`, `/sync/replay`, `/sync/rejections`."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import metrics
from domain.api import ADMIN, USER, Ctx, PageQuery, Router, paginate
from domain.clock import rfc3339
from domain.errors import ValidationError
from domain.wire import Command
from reconcile.batch import apply_batch
from reconcile.envelope import Envelope, parse_envelope
from reconcile.models import RejectedChange
from reconcile.replay import device_owner

router = Router("sync")

PUSH_ERRORS = ("validation_error", "malformed_body", "payload_too_large", "unsupported_protocol", "forbidden")


@router.post("/api/v1/sync/push", raw_body=True, errors=PUSH_ERRORS, auth_in_unit=True)
def push(ctx: Ctx) -> dict[str, Any]:
    """Apply a device's batch of offline changes; answer with the id map and a result per change."""
    envelope = parse_envelope(ctx.payload)
    # The token's user and login session are checked by the batch's own unit, in its first statement.
    response = apply_batch(ctx.db, ctx.token_user(), envelope)
    metrics.pushed(response)
    return response


def replay_as_owner(ctx: Ctx, envelope: Envelope) -> dict[str, Any]:
    """Support staff run a device's queue through the same reconciler, as the device's user."""
    owner = ctx.read(lambda s: device_owner(s, envelope.device_id))
    batch = f"replay:{ctx.actor.username}:{uuid.uuid4().hex[:12]}"
    return apply_batch(ctx.db, owner, envelope, dry_run=envelope.dry_run, batch_id=batch, resolver=ctx.actor.id)


@router.post("/api/v1/sync/replay", auth=ADMIN, raw_body=True, errors=(*PUSH_ERRORS, "not_found"))
def replay(ctx: Ctx) -> dict[str, Any]:
    """Replay an exported queue as the device's user; `dry_run` applies and rolls back."""
    return replay_as_owner(ctx, parse_envelope(ctx.payload, allow_dry_run=True))


class RejectionQuery(PageQuery):
    device_id: str | None = Field(None, max_length=100)
    open: bool | None = None


def rejection_doc(row: RejectedChange) -> dict[str, Any]:
    return {
        "id": row.id,
        "device_id": row.device_id,
        "client_temp_id": row.client_temp_id,
        "op": row.op,
        "payload": orjson.loads(row.payload),
        "error": orjson.loads(row.error),
        "user": row.user_id,
        "created_at": rfc3339(row.created_at),
        "resolved_at": rfc3339(row.resolved_at),
        "resolved_by": row.resolved_by,
    }


@router.get("/api/v1/sync/rejections", auth=ADMIN, query=RejectionQuery)
def rejections(ctx: Ctx) -> dict[str, Any]:
    """Refused changes with payload, error and time, oldest first; `open=true` for the unresolved ones."""
    q: RejectionQuery = ctx.query
    stmt = select(RejectedChange).order_by(RejectedChange.id)
    if q.device_id is not None:
        stmt = stmt.where(RejectedChange.device_id == q.device_id)
    if q.open is True:
        stmt = stmt.where(RejectedChange.resolved_at.is_(None))
    elif q.open is False:
        stmt = stmt.where(RejectedChange.resolved_at.is_not(None))
    return ctx.read(lambda s: paginate(ctx, s, stmt, rejection_doc, q))


class RejectionReplay(Command):
    device_id: str = Field(min_length=1, max_length=100)
    ids: list[int] | None = Field(None, max_length=500)
    dry_run: bool = False


def open_changes(session: Session, device_id: str, ids: list[int] | None) -> list[dict[str, Any]]:
    """The payloads of a device's open refusals (all, or those of `ids`), the latest attempt of each change,
    in their original order."""
    stmt = (
        select(RejectedChange)
        .where(RejectedChange.device_id == device_id, RejectedChange.resolved_at.is_(None))
        .order_by(RejectedChange.id)
    )
    if ids is not None:
        stmt = stmt.where(RejectedChange.id.in_(ids))
    latest: dict[str, dict[str, Any]] = {}
    for row in session.scalars(stmt):
        latest.pop(row.client_temp_id, None)  # keep the original order of the latest attempt
        latest[row.client_temp_id] = orjson.loads(row.payload)
    return list(latest.values())


def replay_open_rejections(ctx: Ctx, device_id: str, ids: list[int] | None, dry_run: bool) -> dict[str, Any]:
    """Retry stored refusals through the reconciler as the device's user (the support console calls it too)."""
    changes = ctx.read(lambda s: open_changes(s, device_id, ids))
    if not changes:
        raise ValidationError("no open rejections to replay", "ids", {"device_id": device_id})
    envelope = parse_envelope({"device_id": device_id, "changes": changes, "dry_run": dry_run}, allow_dry_run=True)
    return replay_as_owner(ctx, envelope)


@router.post("/api/v1/sync/rejections/replay", auth=ADMIN, body=RejectionReplay, errors=(*PUSH_ERRORS, "not_found"))
def replay_rejections(ctx: Ctx) -> dict[str, Any]:
    """Retry stored refusals (all open ones of the device, or `ids`) in their original order."""
    cmd: RejectionReplay = ctx.body
    return replay_open_rejections(ctx, cmd.device_id, cmd.ids, cmd.dry_run)


__all__ = ["USER", "router"]
