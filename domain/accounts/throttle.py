"""Login throttling, kept in the database so that it holds across server processes.

Rule: a login is refused with `too_many_attempts` (429, `Retry-After`) when its username already has 5
FAILED attempts within the last 15 minutes (failures before the username's last successful login do not
count), or its client address already has 20 (a success does not clear those: one owned account must not
reset an address that is guessing others). Only attempts that failed count: a correct login never counts
against its address, so 40 drivers starting their shift behind one NAT all get in. A refused attempt is not
counted and checks no password, so the `Retry-After` a client is given is the truth.

The count stays strict under concurrency and across processes: every attempt is first *reserved* (a row,
committed, neither admitted nor settled), then decided in a unit that locks the username's and the address's
recent attempts: when even all admitted attempts still in flight failing could not reach the limit, it is
*admitted* to the password check; when the settled failures alone reach it, it is refused; otherwise it
*waits* (a short poll) for those in flight to settle, and decides again. So of N simultaneous wrong guesses
at most the allowed number reach the password check, and N right ones all succeed. An attempt waiting
counts for nobody; an admitted one in flight for longer than `STALE` died with its process and counts as a
failure.

Attempts older than LPG_LOGIN_ATTEMPTS_KEEP_DAYS (default 30) are deleted by later logins, a bounded batch at
a time (`prune_attempts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from domain.accounts.models import LoginAttempt
from domain.errors import TooManyAttempts

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_ADDRESS = 20
UNKNOWN_ADDRESS = "unknown"
PRUNE_BATCH = 500


def reserve_attempt(session: Session, username: str, client_addr: str, now: datetime) -> LoginAttempt:
    """An attempt in flight (not counted as a failure); committed before the throttle looks."""
    attempt = LoginAttempt(
        username=username[:150], client_addr=client_addr[:64], at=now, succeeded=False, settled=False, admitted=False
    )
    session.add(attempt)
    session.flush()
    return attempt


def prune_attempts(session: Session, now: datetime, keep_days: int) -> int:
    """Delete login attempts older than `keep_days` (never any inside the throttle's window), at most
    PRUNE_BATCH a call: every login takes a bounded bite, so the table stays the size of its retention."""
    cutoff = now - max(timedelta(days=keep_days), WINDOW)
    ids = (
        session.execute(
            select(LoginAttempt.id).where(LoginAttempt.at < cutoff).order_by(LoginAttempt.at).limit(PRUNE_BATCH)
        )
        .scalars()
        .all()
    )
    if ids:
        session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))
    return len(ids)


def forget_attempt(session: Session, attempt_id: int) -> None:
    """A throttled attempt checked no password: it does not count against anyone."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt_id))


PENDING: Final = "pending"  # decide again once admitted attempts in flight have settled
STALE = timedelta(seconds=60)
# How long an attempt waits for earlier ones in flight before it gives up (and is told to retry shortly).
MAX_WAIT_SECONDS = 20.0
POLL_SECONDS = 0.05


def check_throttle(
    session: Session, attempt: LoginAttempt, now: datetime
) -> TooManyAttempts | Literal["pending"] | None:
    """The refusal for this reserved attempt, `PENDING` when the outcome of admitted attempts still in
    flight decides, or None when it may go on to the password check (it is then marked admitted).

    The rows counted are read with `FOR UPDATE` (SQLite: the unit's `BEGIN IMMEDIATE`), so two attempts of
    one username or address are decided one after the other: the second sees the first admitted."""
    window_start = now - WINDOW
    rows = _recent(session, attempt, window_start)
    by_user = [row for row in rows if row.username == attempt.username]
    by_addr = [row for row in rows if row.client_addr == attempt.client_addr]
    successes = [row.at for row in by_user if row.settled and row.succeeded]
    since_user = max([window_start, *successes])
    rules = ((by_user, since_user, MAX_FAILURES_PER_USERNAME), (by_addr, window_start, MAX_FAILURES_PER_ADDRESS))
    waits = []
    pending = False
    for rows, since, limit in rules:
        counted = [row for row in rows if row.at > since and row.id != attempt.id]
        failures = sorted((row.at for row in counted if _failed(row, now)), reverse=True)
        if len(failures) >= limit:
            waits.append(_wait(failures, limit, now))
        elif len(failures) + sum(1 for row in counted if _checking(row, now)) >= limit:
            pending = True
    if waits:
        retry_after = max(waits)
        return TooManyAttempts(
            f"too many failed logins; try again in {retry_after} seconds",
            {"retry_after": retry_after, "window_seconds": int(WINDOW.total_seconds())},
        )
    if pending:
        return PENDING
    session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt.id).values(admitted=True))
    return None


def _recent(session: Session, attempt: LoginAttempt, since: datetime) -> Sequence[Any]:
    """The attempts of the username or the address in the window, locked until this unit ends.

    Locked by primary key in ascending order, so that two deciding units rarely wait on each other in a
    circle (locking through the username index, then the address index, deadlocks two attempts of one
    address). The ids are read again once the rows are locked: an attempt decided meanwhile (its reservation
    committed after the first read) is locked and counted too, so of two attempts deciding at once the
    later one always counts the earlier (a deadlock that remains is retried by the unit of work)."""
    who = or_(LoginAttempt.username == attempt.username, LoginAttempt.client_addr == attempt.client_addr)
    columns = (LoginAttempt.id, LoginAttempt.username, LoginAttempt.client_addr, LoginAttempt.at)
    flags = (LoginAttempt.succeeded, LoginAttempt.settled, LoginAttempt.admitted)
    locked: dict[int, Any] = {}
    while True:
        ids = set(session.scalars(select(LoginAttempt.id).where(who, LoginAttempt.at > since)).all())
        new = sorted(ids - set(locked))
        if not new:
            return list(locked.values())
        for start in range(0, len(new), 1000):
            for row in session.execute(
                select(*columns, *flags)
                .where(LoginAttempt.id.in_(new[start : start + 1000]))
                .order_by(LoginAttempt.id)
                .with_for_update()
            ):
                locked[row.id] = row


def _failed(row: Any, now: datetime) -> bool:
    """A settled failure, or an admitted attempt in flight for so long that it died with its process."""
    if row.settled:
        return not row.succeeded
    return bool(row.admitted) and row.at < now - STALE


def _checking(row: Any, now: datetime) -> bool:
    """Admitted and in flight: its password is being checked now."""
    return not row.settled and bool(row.admitted) and row.at >= now - STALE


def _wait(newest_first: Sequence[datetime], limit: int, now: datetime) -> int:
    """Seconds until the `limit`-th most recent failure leaves the window (then one more attempt fits)."""
    oldest_counted = newest_first[limit - 1]
    return max(1, math.ceil((oldest_counted + WINDOW - now).total_seconds()))
