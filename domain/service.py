"""What every service receives (`Call`) and returns (`Outcome`): the same for REST and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, object_session

from domain.accounts.policy import Actor
from domain.clock import utcnow
from domain.ledger import Staged, flush_all
from domain.settings import Settings


@dataclass
class Call:
    """One service invocation: the open session (services flush, never commit), who acts, from which
    device, and, for sync changes, the client_temp_id and batch that go into the audit context."""

    session: Session
    actor: Actor
    settings: Settings
    device_id: str | None = None
    client_temp_id: str | None = None
    batch_id: str | None = None
    now: datetime = field(default_factory=utcnow)

    def audit_context(self) -> dict[str, Any]:
        """Extra audit context for changes that arrived through sync."""
        context: dict[str, Any] = {}
        if self.client_temp_id is not None:
            context["client_temp_id"] = self.client_temp_id
        if self.batch_id is not None:
            context["batch"] = self.batch_id
        return context


@dataclass
class Outcome:
    """What a service did: the record (its entity name, id, version, number), warnings for the client,
    related records (`{"invoice": invoice}`), and a last-write-wins conflict report for updates."""

    entity: str
    record: Any
    warnings: list[dict[str, Any]] = field(default_factory=list)
    related: dict[str, Any] = field(default_factory=dict)
    conflict: dict[str, Any] | None = None

    @property
    def id(self) -> int:
        """The record's id. Services leave new records to the unit's one flush (a batch of changes is then
        written with multi-row INSERTs), so asking for a new record's id flushes its session first."""
        if self.record.id is None:
            record = self.record
            session = record.staged_in if isinstance(record, Staged) else object_session(record)
            if session is not None:
                flush_all(session)
        return int(self.record.id)

    @property
    def version(self) -> int:
        return int(self.record.version)

    @property
    def number(self) -> str | None:
        return getattr(self.record, "number", None)


def warning(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}
