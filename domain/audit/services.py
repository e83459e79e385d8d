"""The audit writer: one append-only entry per affected record, in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.ledger import PendingAudit, Target, ledger_of

Snapshot = dict[str, Any] | Callable[[], dict[str, Any]] | None
# Column widths of audit_log: a longer value would be cut (or refused) by the database after it was hashed.
MAX_ACTION, MAX_ENTITY, MAX_DEVICE = 40, 40, 100


def audit(
    session: Session,
    actor: int | None,
    device: str | None,
    action: str,
    entity: str,
    target: Target,
    before: Snapshot = None,
    after: Snapshot = None,
    **context: Any,
) -> None:
    """Record who (`actor`, `device`) did what (`action`) to which record, with before/after snapshots.

    `before` is taken now (a callable is called now, not at commit: by then the record has changed);
    `after` may be a callable evaluated at commit, once new records have their ids (or earlier, at
    `domain.ledger.settle_audits`, when one transaction applies several changes). Extra keyword arguments
    go into the context as they are (`client_temp_id`, `batch`: pass `**call.audit_context()`); a callable
    one is called when `after` is, so it may name a record's id before the flush that gives it one.
    The entry gets its id and its place in the hash chain at commit (see `domain.ledger`).
    """
    _refuse_what_the_columns_would_cut(action, entity, device)
    before_now = before() if callable(before) else before

    def build() -> dict[str, Any]:
        payload: dict[str, Any] = {k: v() if callable(v) else v for k, v in context.items()}
        if before_now is not None:
            payload["before"] = before_now
        if after is not None:
            payload["after"] = after() if callable(after) else after
        return payload

    ledger_of(session).audits.append(PendingAudit(utcnow(), actor, device, action, entity, target, build))


def _refuse_what_the_columns_would_cut(action: str, entity: str, device: str | None) -> None:
    """A value the column cannot hold would be stored differently from what was hashed: refuse it here."""
    if not 0 < len(action) <= MAX_ACTION or not 0 < len(entity) <= MAX_ENTITY:
        raise ValueError(f"audit action and entity type take 1 to {MAX_ACTION} characters: {action!r} {entity!r}")
    if device is not None and len(device) > MAX_DEVICE:
        raise ValueError(f"a device id takes at most {MAX_DEVICE} characters")
