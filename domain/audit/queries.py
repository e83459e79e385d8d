"""Reading the audit log: filters and the entry's representation. Reading only: nothing here writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from pydantic import Field, field_validator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from domain.accounts.models import User
from domain.api import PageQuery
from domain.audit.models import AuditEntry
from domain.clock import parse_rfc3339, rfc3339, zone
from domain.errors import ValidationError


class AuditQuery(PageQuery):
    """Filters of `GET /api/v1/audit/`; all optional, combined with AND. Newest entries first.

    `user` is a user id or a username. `date_from` / `date_to` are RFC 3339 times or plain dates
    (`2026-11-25`, a day in the business time zone): `date_from` is inclusive (from the start of that day),
    `date_to` is inclusive too (a date covers that whole day; a time is the last instant included).
    """

    entity_type: str | None = Field(None, min_length=1, max_length=40)
    entity_id: int | None = Field(None, ge=1, le=2**63 - 1)
    user: str | None = Field(None, min_length=1, max_length=150)
    action: str | None = Field(None, min_length=1, max_length=40)
    date_from: str | None = None
    date_to: str | None = None

    @field_validator("date_from", "date_to")
    @classmethod
    def _date_or_time(cls, value: str | None) -> str | None:
        if value is not None:
            _bound(value, "date", "UTC", end=False)  # refuse it now, as a validation error naming the field
        return value


def _bound(text: str, field: str, tz_name: str, end: bool) -> datetime:
    """A filter bound: a plain date is a whole day in the business time zone; a time is itself."""
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError("must be a date (YYYY-MM-DD) or an RFC 3339 time") from exc
        if end:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=zone(tz_name)).astimezone(UTC)
    try:
        return parse_rfc3339(text, field)
    except ValidationError as exc:
        raise ValueError("must be a date (YYYY-MM-DD) or an RFC 3339 time") from exc


def audit_filter(session: Session, query: AuditQuery, tz_name: str) -> Select[Any]:
    """The entries a query selects, newest first (id order is commit order)."""
    stmt = select(AuditEntry)
    if query.entity_type is not None:
        stmt = stmt.where(AuditEntry.entity_type == query.entity_type)
    if query.entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == query.entity_id)
    if query.action is not None:
        stmt = stmt.where(AuditEntry.action == query.action)
    if query.user is not None:
        stmt = stmt.where(AuditEntry.user_id == _user_id(session, query.user))
    if query.date_from is not None:
        stmt = stmt.where(AuditEntry.at >= _bound(query.date_from, "date_from", tz_name, end=False))
    if query.date_to is not None:
        if len(query.date_to) == 10:
            stmt = stmt.where(AuditEntry.at < _bound(query.date_to, "date_to", tz_name, end=True))
        else:
            stmt = stmt.where(AuditEntry.at <= _bound(query.date_to, "date_to", tz_name, end=True))
    return stmt.order_by(AuditEntry.id.desc())


def _user_id(session: Session, user: str) -> int:
    """A user id, or the id of a username; an unknown username matches nothing (id 0 never exists)."""
    if user.isdigit():
        return int(user)
    found = session.execute(select(User.id).where(User.username == user)).scalar()
    return int(found) if found is not None else 0


def audit_doc(entry: AuditEntry) -> dict[str, Any]:
    """An entry as stored, with its context as JSON (kept as the stored text if it is not valid JSON)."""
    try:
        context: Any = orjson.loads(entry.context)
    except orjson.JSONDecodeError:
        context = entry.context
    return {
        "id": entry.id,
        "at": rfc3339(entry.at),
        "user_id": entry.user_id,
        "device_id": entry.device_id,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "context": context,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
