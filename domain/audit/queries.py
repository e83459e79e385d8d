"""Reading the audit log: filters and the entry's representation. Reading only: nothing here writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from domain.accounts.models import User
from domain.audit.models import AuditEntry
from domain.clock import parse_rfc3339, rfc3339, zone
from domain.errors import ValidationError


def time_bound(text: str, field: str, tz_name: str, end: bool) -> datetime:
    """A filter bound: a plain date is a whole day in the business time zone (its end: the next day's
    start, exclusive); a time is itself. Raises ValueError for anything else."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if not 1 < day.year < 9999:  # a day's bounds in any time zone stay inside the calendar
                raise ValueError("year out of range")
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=zone(tz_name)).astimezone(UTC)
        return parse_rfc3339(text, field)
    except (ValueError, ValidationError, OverflowError) as exc:
        raise ValueError("must be a date (YYYY-MM-DD, years 2 to 9998) or an RFC 3339 time") from exc


def audit_filter(
    session: Session,
    tz_name: str,
    *,
    entity_type: str | None = None,
    entity_id: int | None = None,
    user: str | None = None,
    action: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> Select[Any]:
    """The entries the filters select (all optional, combined with AND), newest first (id = commit order).

    `user` is a user id or a username (an unknown one matches nothing). `date_from` / `date_to` are RFC 3339
    times or plain dates (a whole day in the business time zone); both bounds are inclusive."""
    stmt = select(AuditEntry)
    if entity_type is not None:
        stmt = stmt.where(AuditEntry.entity_type == entity_type)
    if entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if user is not None:
        stmt = stmt.where(AuditEntry.user_id == _user_id(session, user))
    if date_from is not None:
        stmt = stmt.where(AuditEntry.at >= time_bound(date_from, "date_from", tz_name, end=False))
    if date_to is not None:
        upper = time_bound(date_to, "date_to", tz_name, end=True)
        stmt = stmt.where(AuditEntry.at < upper if len(date_to) == 10 else AuditEntry.at <= upper)
    return stmt.order_by(AuditEntry.id.desc())


def _user_id(session: Session, user: str) -> int:
    """A user id, or the id of a username; an unknown username matches nothing (id 0 never exists)."""
    if user.isascii() and user.isdigit():
        number = int(user)
        return number if number < 2**63 else 0
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
