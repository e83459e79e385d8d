"""Log in, refresh, log out: the session life cycle of the blueprint's JWT flow, with its holes closed.

- Login checks the throttle (domain.accounts.throttle), verifies the password outside any transaction
  (Argon2 is slow on purpose), and issues an access token and a refresh token that starts a *family*.
- Refresh rotates: the presented refresh token is spent and a new access AND refresh token of the same
  family are issued. A refresh token presented a second time is `token_reused`: the whole family is revoked
  (a stolen token replayed after the real client refreshed locks both out; they log in again). The token's
  row is locked (`SELECT ... FOR UPDATE`; SQLite serializes writers with `BEGIN IMMEDIATE`), so of two
  simultaneous uses of one token exactly one succeeds.
- Logout revokes the family. Access tokens carry their family, so they stop working at once too.

These three run their own units of work (`Database.run`, which is what commits) because a refusal must
still be recorded: a failed login is counted and audited, a detected reuse revokes a family, and then the
request is refused. Each returns the refusal out of the committed unit and raises it afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.accounts.docs import user_summary
from domain.accounts.models import LoginAttempt, RefreshToken, User
from domain.accounts.passwords import dummy_hash, verify_password
from domain.accounts.policy import Actor
from domain.accounts.schemas import Login, Logout, RefreshSession, normalize_username
from domain.accounts.throttle import (
    MAX_WAIT_SECONDS,
    PENDING,
    POLL_SECONDS,
    check_throttle,
    forget_attempt,
    prune_attempts,
    reserve_attempt,
)
from domain.accounts.tokens import ACCESS, REFRESH, decode_token, encode_token, new_jti
from domain.audit.services import audit
from domain.clock import utcnow
from domain.db import Database
from domain.errors import DomainError, InvalidCredentials, InvalidToken, TokenExpired, TokenReused, TooManyAttempts
from domain.settings import Settings

ENTITY = "user"


@dataclass(frozen=True)
class Issued:
    """A login or refresh answer: `{"access", "refresh", "access_expires_in", "user": {...}}`."""

    access: str
    refresh: str
    access_expires_in: int
    user: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "access": self.access,
            "refresh": self.refresh,
            "access_expires_in": self.access_expires_in,
            "user": self.user,
        }


@dataclass(frozen=True)
class _Candidate:
    user_id: int | None
    password_hash: str


def _raise_if_refused(result: Issued | DomainError) -> Issued:
    if isinstance(result, DomainError):
        raise result
    return result


# -- login ---------------------------------------------------------------------------------------------


def login(db: Database, settings: Settings, cmd: Login, client_addr: str) -> Issued:
    """Username and password for a token pair; throttled, audited, and timing-safe for unknown usernames."""
    checked = _check_password(db, cmd.username, cmd.password, client_addr)

    def settle(session: Session) -> Issued | DomainError:
        user = _settle(session, checked, cmd.username, cmd.device_id, client_addr, via="login")
        if isinstance(user, DomainError):
            return user
        issued, _ = _issue(session, settings, user, new_jti(), cmd.device_id, utcnow())
        audit(
            session, user.id, cmd.device_id, "login", ENTITY, user, **_context(cmd.username, client_addr, cmd.device_id)
        )
        return issued

    return _raise_if_refused(db.run(lambda uow: settle(uow.session)))


def check_credentials(db: Database, username: str, password: str, client_addr: str) -> Actor:
    """HTTP Basic (the CouchDB-compatible surface): the same throttle, password check and failure audit as
    login, without tokens. Successes are not audited (that would be one entry per request)."""
    username = normalize_username(username)
    checked = _check_password(db, username, password, client_addr)

    def settle(session: Session) -> Actor | DomainError:
        user = _settle(session, checked, username, None, client_addr, via="basic")
        return user if isinstance(user, DomainError) else Actor(user.id, user.username, user.role)

    result = db.run(lambda uow: settle(uow.session))
    if isinstance(result, DomainError):
        raise result
    return result


@dataclass(frozen=True)
class _Checked:
    attempt_id: int
    candidate: _Candidate
    verified: bool


def _check_password(db: Database, username: str, password: str, client_addr: str) -> _Checked:
    now = utcnow()

    # 1. Reserve the attempt (committed, in flight), so that concurrent attempts see each other.
    def reserve(uow: Any) -> int:
        prune_attempts(uow.session, now, db.settings.login_attempts_keep_days)  # housekeeping, bounded
        return reserve_attempt(uow.session, username, client_addr, now).id

    attempt_id = db.run(reserve)
    # 2. Count the failures; wait while attempts in flight before this one decide. A throttled attempt is
    #    forgotten and checks no password.
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while True:
        verdict = db.run(lambda uow: _throttled(uow.session, attempt_id, utcnow(), time.monotonic() > deadline))
        if verdict is None:
            break
        if isinstance(verdict, DomainError):
            raise verdict
        time.sleep(POLL_SECONDS)
    # 3. The password, outside any transaction. An unknown username costs the same time as a known one.
    candidate = db.read(lambda s: _candidate(s, username))
    return _Checked(attempt_id, candidate, verify_password(candidate.password_hash, password))


def _throttled(session: Session, attempt_id: int, now: datetime, gave_up: bool) -> DomainError | str | None:
    attempt = session.get(LoginAttempt, attempt_id)
    assert attempt is not None, "the reservation was committed by this request"
    verdict = check_throttle(session, attempt, now)
    if verdict == PENDING and gave_up:
        verdict = TooManyAttempts("too many logins at once from here; try again in a few seconds", {"retry_after": 2})
    if isinstance(verdict, DomainError):
        forget_attempt(session, attempt_id)
    return verdict


def _candidate(session: Session, username: str) -> _Candidate:
    row = session.execute(select(User.id, User.password_hash).where(User.username == username)).first()
    if row is None:
        return _Candidate(None, dummy_hash())
    return _Candidate(row.id, row.password_hash)


def _context(username: str, client_addr: str, device_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"username": username, "client_addr": client_addr}
    if device_id is not None:
        context["device_id"] = device_id
    return context


def _settle(
    session: Session, checked: _Checked, username: str, device_id: str | None, client_addr: str, via: str
) -> User | DomainError:
    """4. The outcome: a success marks the attempt; a failure stays counted and is audited."""
    candidate = checked.candidate
    user = session.get(User, candidate.user_id) if candidate.user_id is not None else None
    reason = None
    if user is None:
        reason = "unknown_username"
    elif not checked.verified or user.password_hash != candidate.password_hash:  # changed while we verified
        reason = "wrong_password"
    elif not user.active:
        reason = "deactivated"
    if reason is not None or user is None:
        context = _context(username, client_addr, device_id)
        if via != "login":
            context["via"] = via
        audit(session, user.id if user else None, device_id, "login_failed", ENTITY, user, reason=reason, **context)
        session.execute(update(LoginAttempt).where(LoginAttempt.id == checked.attempt_id).values(settled=True))
        return InvalidCredentials("the username or password is wrong, or the account is deactivated")
    session.execute(
        update(LoginAttempt).where(LoginAttempt.id == checked.attempt_id).values(succeeded=True, settled=True)
    )
    return user


def _issue(
    session: Session, settings: Settings, user: User, family: str, device_id: str | None, now: datetime
) -> tuple[Issued, str]:
    """A new access token and a new refresh token (recorded, so it can be spent once) of `family`;
    returns the answer and the new refresh token's jti."""
    access, _ = encode_token(settings, user.id, ACCESS, family=family, device_id=device_id, now=now)
    refresh, claims = encode_token(settings, user.id, REFRESH, family=family, device_id=device_id, now=now)
    session.add(
        RefreshToken(
            jti=claims.jti,
            family=family,
            user_id=user.id,
            device_id=device_id,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )
    )
    session.flush()
    return Issued(access, refresh, settings.access_ttl_seconds, user_summary(user)), claims.jti


# -- refresh and logout ------------------------------------------------------------------------------


def refresh(db: Database, settings: Settings, cmd: RefreshSession) -> Issued:
    """Spend a refresh token for a new pair; a spent one is `token_reused` and revokes its family."""
    claims = decode_token(settings, cmd.refresh, REFRESH)
    return _raise_if_refused(db.run(lambda uow: _rotate(uow.session, settings, claims.jti, claims.user_id)))


def _rotate(session: Session, settings: Settings, jti: str, user_id: int) -> Issued | DomainError:
    now = utcnow()
    token = _lock_token(session, jti, user_id)
    if token is None:
        return InvalidToken("this refresh token is not known; log in again")
    if token.used_at is not None:
        revoked = revoke_family(session, token.family, now)
        if revoked:
            audit(
                session,
                token.user_id,
                token.device_id,
                "refresh_reused",
                ENTITY,
                token.user_id,
                device_id=token.device_id,
                used_at=token.used_at.isoformat(),
                sessions_revoked=revoked,
            )
        return TokenReused(
            "this refresh token was already used: the session is ended for every holder; log in again",
            {"tokens_revoked": revoked},
        )
    if token.revoked_at is not None:
        return InvalidToken("this session has ended (logout or a reused token); log in again", {"reason": "revoked"})
    if token.expires_at <= now:
        return TokenExpired("the refresh token has expired; log in again")
    user = session.get(User, token.user_id)
    if user is None or not user.active:
        return InvalidToken("the token's user does not exist or is deactivated")
    issued, successor = _issue(session, settings, user, token.family, token.device_id, now)
    token.used_at = now
    token.replaced_by = successor
    return issued


def logout(db: Database, settings: Settings, cmd: Logout) -> None:
    """End the session the refresh token belongs to (its whole family); logging out twice is no error."""
    claims = decode_token(settings, cmd.refresh, REFRESH, allow_expired=True)
    _raise_if_refused_none(db.run(lambda uow: _logout(uow.session, claims.jti, claims.user_id)))


def _raise_if_refused_none(result: DomainError | None) -> None:
    if result is not None:
        raise result


def _logout(session: Session, jti: str, user_id: int) -> DomainError | None:
    token = _lock_token(session, jti, user_id)
    if token is None:
        return InvalidToken("this refresh token is not known")
    revoked = revoke_family(session, token.family, utcnow())
    if revoked:
        audit(session, token.user_id, token.device_id, "logout", ENTITY, token.user_id, device_id=token.device_id)
    return None


def _lock_token(session: Session, jti: str, user_id: int) -> RefreshToken | None:
    token = session.execute(
        select(RefreshToken).where(RefreshToken.jti == jti).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if token is None or token.user_id != user_id:
        return None
    return token


def revoke_family(session: Session, family: str, now: datetime) -> int:
    """Revoke every live refresh token of a login session; returns how many were live."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def revoke_user_sessions(session: Session, user_id: int, now: datetime) -> int:
    """Every session of a user ends (deactivation, password reset)."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def session_revoked(session: Session, family: str) -> bool:
    """Whether the login session an access token belongs to was ended (logout, reuse, deactivation)."""
    found = session.execute(
        select(RefreshToken.id).where(RefreshToken.family == family, RefreshToken.revoked_at.is_not(None)).limit(1)
    ).first()
    return found is not None
