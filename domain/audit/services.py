"""The audit writer: one append-only entry per affected record, in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.ledger import PendingAudit, Target, ledger_of

Snapshot = dict[str, Any] | Callable[[], dict[str, Any]] | None


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
    go into the context as they are (`client_temp_id`, `batch`: pass `**call.audit_context()`).
    The entry gets its id and its place in the hash chain at commit (see `domain.ledger`).
    """
    before_now = before() if callable(before) else before

    def build() -> dict[str, Any]:
        payload: dict[str, Any] = dict(context)
        if before_now is not None:
            payload["before"] = before_now
        if after is not None:
            payload["after"] = after() if callable(after) else after
        return payload

    ledger_of(session).audits.append(PendingAudit(utcnow(), actor, device, action, entity, target, build))
