"""The one way a request's credentials become a user: `resolve(db, settings, authorization, client_addr)`.

Every surface that authenticates calls this, so a revocation holds everywhere at once:

- `Authorization: Bearer <access token>`: the token must verify (domain.accounts.tokens); its user must
  exist and be active, and the login session (refresh-token family) it belongs to must not have ended
  (logout, a detected refresh reuse, a deactivation, a password reset). All of it is read from the database
  on every request, so a revocation made by any server process counts on the next request in every other.
- `Authorization: Basic <base64 user:password>` (only where the caller allows it, the CouchDB surface): the
  login's throttle, timing-safe password check and failure audit (domain.accounts.sessions.check_credentials),
  so a reset password stops working on the next request.

No answer of this function outlives a revocation: the user and the session are read on every request.
What a process remembers is only what cannot go stale: a token text it has verified, with its key and type
(domain.accounts.tokens.VERIFIED, the expiry checked again on each use), and, on the CouchDB surface, a Basic
check that succeeded, tied to the very password hash it was checked against (sync.couch.common).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, exists, select
from sqlalchemy.orm import Session

from domain.accounts.models import RefreshToken, User
from domain.accounts.policy import Actor
from domain.accounts.sessions import check_credentials
from domain.accounts.tokens import ACCESS, TokenClaims, decode_token
from domain.db import Database
from domain.errors import InvalidToken, NotAuthenticated
from domain.settings import Settings

AuthUser = Actor


@dataclass(frozen=True)
class TokenUser:
    """A verified bearer token's user, not loaded yet: the unit that acts for it checks it, by `load_user`
    or inside a statement of its own (a push's prefetch selects `user_status` with its other rows)."""

    user_id: int
    family: str | None  # the login session (refresh-token family); None for tokens issued without one


def user_status(with_session: bool) -> Any:
    """`ok`, `inactive` or `ended` (the token's login session was ended), for the user `:user_id` (and the
    session `:family`): one column, so another statement can select it beside its own rows."""
    ended = exists().where(RefreshToken.family == bindparam("family"), RefreshToken.revoked_at.is_not(None))
    whens: list[Any] = [(User.active.is_not(True), "inactive")]
    if with_session:
        whens.append((ended, "ended"))
    return case(*whens, else_="ok").label("status")


# One statement each, built once: the user's row and its status (with the login session, or without).
_USER = {
    with_session: select(User.id, User.username, User.role, user_status(with_session)).where(
        User.id == bindparam("user_id")
    )
    for with_session in (False, True)
}


def checked_user(row: Sequence[Any] | None) -> AuthUser:
    """The user of a (id, username, role, status) row, or the refusal: a missing or deactivated user, or an
    ended login session."""
    if row is None or row[3] == "inactive":
        raise InvalidToken("the token's user does not exist or is deactivated")
    if row[3] == "ended":
        raise InvalidToken("this session has ended (logout or a reused token); log in again", {"reason": "revoked"})
    return AuthUser(row[0], row[1], row[2])


def load_user(session: Session, user_id: int, family: str | None = None) -> AuthUser:
    """The token's user, if still active and (for tokens issued by login) its session was not ended.

    One statement (it is the first statement of every authenticated request's unit; a push selects the same
    status inside its prefetch instead)."""
    params = {"user_id": user_id} if family is None else {"user_id": user_id, "family": family}
    return checked_user(session.execute(_USER[family is not None], params).first())


def bearer_claims(settings: Settings, authorization: str | None) -> TokenClaims:
    """The verified claims of a bearer access token, without the database: the first half of `resolve`.
    The caller must then check the user and the login session with `load_user`, in the unit that uses them
    (a push does it as its unit's first statement, so a revocation still counts on the next request)."""
    if not authorization or not authorization.strip():
        raise NotAuthenticated("log in first: send 'Authorization: Bearer <access token>'")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return decode_token(settings, value, ACCESS)
    raise InvalidToken("the Authorization header must be 'Bearer <access token>'")


def resolve(
    db: Database, settings: Settings, authorization: str | None, client_addr: str, *, allow_basic: bool = False
) -> AuthUser:
    """The active user the `Authorization` header names, or the refusal (`not_authenticated`,
    `invalid_token`, `token_expired`, `invalid_credentials`, `too_many_attempts`)."""
    if not authorization or not authorization.strip():
        raise NotAuthenticated("log in first: send 'Authorization: Bearer <access token>'")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        claims = decode_token(settings, value, ACCESS)
        return db.read(lambda s: load_user(s, claims.user_id, claims.family))
    if allow_basic and scheme.lower() == "basic" and value:
        username, password = basic_credentials(value)
        actor = check_credentials(db, username, password, client_addr)
        return db.read(lambda s: load_user(s, actor.id))
    expected = "'Bearer <access token>' or HTTP Basic" if allow_basic else "'Bearer <access token>'"
    raise InvalidToken(f"the Authorization header must be {expected}")


def basic_credentials(value: str) -> tuple[str, str]:
    """`user:password` from the base64 of an HTTP Basic header."""
    try:
        username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidToken("malformed Basic credentials") from None
    if not sep or not username:
        raise InvalidToken("malformed Basic credentials")
    return username, password
