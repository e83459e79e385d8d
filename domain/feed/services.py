"""Writing to the change feed and allocating gap-free document numbers, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from domain.clock import business_year
from domain.feed.models import PUBLIC_SCOPE, Counter
from domain.ledger import PendingChange, Target, ledger_of

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
    return f"{prefix}-{year}-{value:06d}"


def allocate_number(session: Session, prefix: str, year: int) -> str:
    """The next number of `prefix` in `year`, from a counter row locked until the commit.

    The first number of a series in a transaction locks its counter row with one locking read (the row is
    created at zero on the series' first use by an atomic upsert, so without a race); the following ones count on in the ledger, which
    writes the counter once at commit (`domain.ledger.write_ledger`, with the feed and audit counters). The lock is held until the commit
    and a rolled-back transaction writes nothing, so numbers have no gaps and no duplicates; a batch of
    500 sales costs one statement per series instead of one or two per number.
    """
    name = f"{prefix}-{year}"
    numbers = ledger_of(session).numbers
    state = numbers.get(name)
    if state is None:
        # The row exists after a series' first number: one locking read. The first use of a series creates
        # it at zero by an atomic upsert (no race between two first users) and reads it again.
        sqlite = session.get_bind().dialect.name == "sqlite"  # there the database is this writer's alone
        read = select(Counter.value).where(Counter.name == name)
        value = session.execute(read if sqlite else read.with_for_update()).scalar_one_or_none()
        if value is None:
            upsert = (
                "INSERT INTO counters (name, value) VALUES (:name, 0) ON CONFLICT(name) DO NOTHING"
                if sqlite
                else "INSERT INTO counters (name, value) VALUES (:name, 0) ON DUPLICATE KEY UPDATE value = value"
            )
            session.execute(text(upsert), {"name": name})
            value = session.execute(read if sqlite else read.with_for_update()).scalar_one()
        state = numbers[name] = [int(value), int(value)]
    state[1] += 1
    return format_number(prefix, year, state[1])


def number_for(session: Session, prefix: str, moment: datetime, tz_name: str) -> str:
    """A document number for a confirm at `moment` (the year is the business time zone's)."""
    return allocate_number(session, prefix, business_year(moment, tz_name))


def current_seq(session: Session) -> int:
    """The highest committed seq: every feed row at or below it is committed and visible."""
    return int(session.execute(select(Counter.value).where(Counter.name == "feed")).scalar_one())
