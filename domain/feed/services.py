"""Writing to the change feed and allocating gap-free document numbers, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Column, select
from sqlalchemy.orm import Session

from domain.clock import business_year
from domain.feed.models import PUBLIC_SCOPE, Counter
from domain.ledger import PendingChange, Target, late_number, ledger_of, number_text

FEED_ENTITIES = (
    "equipment",
    "depot",
    "truck",
    "service",
    "customer",
    "meter_reading",
    "distribution",
    "transaction",
    "invoice",
    "depot_stock",
    "truck_stock",
    "site_stock",
)


def record_change(
    session: Session,
    entity: str,
    target: Target,
    version: int | None = None,
    *,
    doc: Callable[[], dict[str, Any]] | dict[str, Any],
    scope: int = PUBLIC_SCOPE,
    deleted: bool = False,
    last_modified: datetime | None = None,
) -> None:
    """Record that `entity` `target` changed in this transaction; its feed entry is written at commit.

    `target` is the ORM object (its id, version and last_modified are read at commit, after the flush) or
    a plain id with an explicit `version`. `doc` builds the record's REST representation. `scope` is 0 for
    reference data every user pulls, else the id of the driver who owns the record.
    """
    if entity not in FEED_ENTITIES:
        raise ValueError(f"unknown feed entity {entity!r}")
    ledger_of(session).changes.append(
        PendingChange(entity, target, scope, deleted, doc, version=version, last_modified=last_modified)
    )


def format_number(prefix: str, year: int, value: int) -> str:
    """`TRX-2026-000999`: prefix, business year, a sequence per prefix and year padded to 6 digits."""
    return number_text(f"{prefix}-{year}", value)


def allocate_number(session: Session, prefix: str, year: int, column: Column[Any] | None = None) -> str:
    """The next number of `prefix` in `year`, for the row whose `column` holds it: a token until the
    commit's late lock, where the series' counter row is locked together with the feed's and the audit
    chain's, and the token becomes the number (`domain.ledger.late_number`). No counter row is locked
    before that, so sales of different trucks do not wait for each other's whole transaction. A rolled-back
    unit or savepoint uses no number: numbers have no gaps and no duplicates."""
    return late_number(session, f"{prefix}-{year}", column)


def number_for(session: Session, prefix: str, moment: datetime, tz_name: str, column: Column[Any]) -> str:
    """A document number for a confirm at `moment` (the year is the business time zone's)."""
    return allocate_number(session, prefix, business_year(moment, tz_name), column)


def current_seq(session: Session) -> int:
    """The highest committed seq: every feed row at or below it is committed and visible."""
    return int(session.execute(select(Counter.value).where(Counter.name == "feed")).scalar_one())
