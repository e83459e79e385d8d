"""The one way a request's credentials become a user: `resolve(db, settings, authorization, client_addr)`.

Every surface that authenticates calls this, so a revocation holds everywhere at once:

- `Authorization: Bearer <access token>`: the token must verify (domain.accounts.tokens); its user must
  exist and be active, and the login session (refresh-token family) it belongs to must not have ended
  (logout, a detected refresh reuse, a deactivation, a password reset). All of it is read from the database
  on every request, so a revocation made by any server process counts on the next request in every other.
- `Authorization: Basic <base64 user:password>` (only where the caller allows it, the CouchDB surface): the
  login's throttle, timing-safe password check and failure audit (domain.accounts.sessions.check_credentials),
  so a reset password stops working on the next request.

Nothing is cached in memory: no answer of this function outlives a revocation.
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy import bindparam, exists, literal, select
from sqlalchemy.orm import Session

from domain.accounts.models import RefreshToken, User
from domain.accounts.policy import Actor
from domain.accounts.sessions import check_credentials
from domain.accounts.tokens import ACCESS, TokenClaims, decode_token
from domain.db import Database
from domain.errors import InvalidToken, NotAuthenticated
from domain.settings import Settings

AuthUser = Actor


# One statement each, built once: the user's row, and whether the token's login session was ended.
_USER = select(User.id, User.username, User.role, User.active, literal(False).label("ended")).where(
    User.id == bindparam("user_id")
)
_USER_AND_SESSION = select(
    User.id,
    User.username,
    User.role,
    User.active,
    exists().where(RefreshToken.family == bindparam("family"), RefreshToken.revoked_at.is_not(None)).label("ended"),
).where(User.id == bindparam("user_id"))


def load_user(session: Session, user_id: int, family: str | None = None) -> AuthUser:
    """The token's user, if still active and (for tokens issued by login) its session was not ended.

    One statement (it is the first statement of a push's own unit, and of every other authenticated
    request's)."""
    if family is None:
        row = session.execute(_USER, {"user_id": user_id}).first()
    else:
        row = session.execute(_USER_AND_SESSION, {"user_id": user_id, "family": family}).first()
    if row is None or not row.active:
        raise InvalidToken("the token's user does not exist or is deactivated")
    if row.ended:
        raise InvalidToken("this session has ended (logout or a reused token); log in again", {"reason": "revoked"})
    return AuthUser(row.id, row.username, row.role)


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
