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

    `before` is taken now (pass a dict); `after` may be a callable evaluated at commit, once new records
    have their ids. Extra keyword arguments go into the context as they are (e.g. `client_temp_id`).
    The entry gets its id and its place in the hash chain at commit (see `domain.ledger`).
    """

    def build() -> dict[str, Any]:
        payload: dict[str, Any] = dict(context)
        if before is not None:
            payload["before"] = before() if callable(before) else before
        if after is not None:
            payload["after"] = after() if callable(after) else after
        return payload

    ledger_of(session).audits.append(PendingAudit(utcnow(), actor, device, action, entity, target, build))
