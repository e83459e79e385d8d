"""Login throttling, kept in the database so that it holds across server processes.

Rule: a login is refused with `too_many_attempts` (429, `Retry-After`) when its username already has 5
failed attempts within the last 15 minutes (failures before the username's last successful login do not
count), or its client address already has 20 (a success does not clear those: one owned account must not
reset an address that is guessing others). A refused attempt is not counted and checks no password, so the
`Retry-After` a client is given is the truth: after that many seconds it may try again.

The count is strict also under concurrency and across processes: every attempt is first *reserved* (a
failed-until-proven-otherwise row, committed), and only then counted together with every other attempt
already reserved. Of N simultaneous attempts at most the allowed number reach the password check.

Attempts older than LPG_LOGIN_ATTEMPTS_KEEP_DAYS (default 30) are deleted by later logins, a bounded batch at
a time (`prune_attempts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from domain.accounts.models import LoginAttempt
from domain.errors import TooManyAttempts

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_ADDRESS = 20
UNKNOWN_ADDRESS = "unknown"
PRUNE_BATCH = 500


def reserve_attempt(session: Session, username: str, client_addr: str, now: datetime) -> LoginAttempt:
    """A failed attempt until the password is proven; committed before the throttle looks."""
    attempt = LoginAttempt(username=username[:150], client_addr=client_addr[:64], at=now, succeeded=False)
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


def check_throttle(session: Session, attempt: LoginAttempt, now: datetime) -> TooManyAttempts | None:
    """The refusal for this reserved attempt, or None when it may go on to the password check."""
    window_start = now - WINDOW
    last_success = session.execute(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == attempt.username,
            LoginAttempt.succeeded.is_(True),
            LoginAttempt.at >= window_start,
        )
    ).scalar_one()
    since_user = max(window_start, last_success) if last_success is not None else window_start
    by_user = _failures(
        session, LoginAttempt.username == attempt.username, since_user, attempt.id, MAX_FAILURES_PER_USERNAME
    )
    by_addr = _failures(
        session, LoginAttempt.client_addr == attempt.client_addr, window_start, attempt.id, MAX_FAILURES_PER_ADDRESS
    )
    waits = [
        _wait(times, limit, now)
        for times, limit in ((by_user, MAX_FAILURES_PER_USERNAME), (by_addr, MAX_FAILURES_PER_ADDRESS))
        if len(times) >= limit
    ]
    if not waits:
        return None
    retry_after = max(waits)
    return TooManyAttempts(
        f"too many failed logins; try again in {retry_after} seconds",
        {"retry_after": retry_after, "window_seconds": int(WINDOW.total_seconds())},
    )


def _failures(
    session: Session, who: ColumnElement[bool], since: datetime, exclude_id: int, limit: int
) -> Sequence[datetime]:
    """The most recent failures (and other reserved attempts) after `since`, newest first, at most `limit`."""
    return (
        session.execute(
            select(LoginAttempt.at)
            .where(who, LoginAttempt.succeeded.is_(False), LoginAttempt.at > since, LoginAttempt.id != exclude_id)
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )


def _wait(newest_first: Sequence[datetime], limit: int, now: datetime) -> int:
    """Seconds until the `limit`-th most recent failure leaves the window (then one more attempt fits)."""
    oldest_counted = newest_first[limit - 1]
    return max(1, math.ceil((oldest_counted + WINDOW - now).total_seconds()))
