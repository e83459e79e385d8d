"""JWT access and refresh tokens (PyJWT, HS256 pinned). Every claim the checks need is required.

A token is accepted only if it is an HS256 JWT signed with our key, issued by us (`iss`), unexpired, with
`exp`, `iat`, `sub`, `jti` and `typ` present and well-formed, and of the type the caller expects: an
access token where an access token is wanted, a refresh token only at refresh and logout. Anything else
(`alg: none`, another algorithm, a wrong signature, a missing claim, a refresh token used as an access
token) is `invalid_token`; an expired one is `token_expired`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from domain.clock import utcnow
from domain.errors import InvalidToken, TokenExpired
from domain.memo import BoundedMemo
from domain.settings import Settings

ALGORITHM = "HS256"
ISSUER = "lpg-sync"
ACCESS, REFRESH = "access", "refresh"
TOKEN_TYPES = (ACCESS, REFRESH)
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "typ", "iss"]
# A little tolerance for `iat` written by another server process whose clock is slightly ahead.
LEEWAY_SECONDS = 5
MAX_USER_ID = 2**63 - 1
# Tokens whose signature and claims this process has verified (see `decode_token`); at most this many.
VERIFIED_MAX = 4096
EXPIRED = "the token has expired; refresh it or log in again"


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    token_type: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    family: str | None = None
    device_id: str | None = None


def new_jti() -> str:
    return secrets.token_hex(16)


def encode_token(
    settings: Settings,
    user_id: int,
    token_type: str,
    *,
    jti: str | None = None,
    family: str | None = None,
    device_id: str | None = None,
    now: datetime | None = None,
) -> tuple[str, TokenClaims]:
    """Sign a token of `token_type` for `user_id`; lifetimes come from the settings (15 min / 7 days)."""
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"unknown token type {token_type!r}")
    now = (now or utcnow()).replace(microsecond=0)  # JWT times are whole seconds
    ttl = settings.access_ttl_seconds if token_type == ACCESS else settings.refresh_ttl_seconds
    claims = TokenClaims(user_id, token_type, jti or new_jti(), now, now + timedelta(seconds=ttl), family, device_id)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(user_id),
        "typ": token_type,
        "jti": claims.jti,
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
    }
    if family:
        payload["fam"] = family
    if device_id:
        payload["dev"] = device_id
    return jwt.encode(payload, settings.secret_key, algorithm=ALGORITHM), claims


# The claims of tokens already verified by this process, so that a device's next request with the same
# token skips PyJWT's decoding and HMAC check (about 60 us of a small push's CPU), keyed by (signing key,
# token type, token text): an entry is a pure function of its key and never goes stale. The expiry is
# checked again on every use; whether the token's user and login session are still active is not decided
# here at all but read from the database on every request, so a revocation or a deactivation counts at once
# in every process. Only successes are kept (a wrong token costs its full check each time).
VERIFIED: BoundedMemo[tuple[str, str, str], TokenClaims] = BoundedMemo(VERIFIED_MAX)


def decode_token(settings: Settings, token: str, expected_type: str, *, allow_expired: bool = False) -> TokenClaims:
    """Refuse anything but a well-formed, unexpired HS256 token of the expected type signed with our key.

    `allow_expired` is for logout only: an expired refresh token still names the family to revoke.
    """
    if allow_expired:
        return _decode(settings, token, expected_type, allow_expired=True)
    key = (settings.secret_key, expected_type, token)
    claims = VERIFIED.get(key)
    if claims is None:
        claims = _decode(settings, token, expected_type, allow_expired=False)
        VERIFIED.put(key, claims)
    elif claims.expires_at.timestamp() <= time.time() - LEEWAY_SECONDS:  # PyJWT's own bound
        raise TokenExpired(EXPIRED)
    return claims


def _decode(settings: Settings, token: str, expected_type: str, *, allow_expired: bool) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],  # pinned: `none`, RS256/HS512 and key-confusion tricks are refused
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={
                "require": REQUIRED_CLAIMS,
                "verify_signature": True,
                "verify_exp": not allow_expired,
                "verify_iat": True,
                "verify_nbf": True,
                "verify_iss": True,
                "verify_sub": True,
                "verify_jti": True,
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired(EXPIRED) from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from exc
    token_type = payload.get("typ")
    if token_type != expected_type:
        raise InvalidToken(f"a {token_type!s} token cannot be used here; send a {expected_type} token")
    sub, jti, family, device = payload["sub"], payload["jti"], payload.get("fam"), payload.get("dev")
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and 0 < int(sub) <= MAX_USER_ID):
        raise InvalidToken("the token's subject is not a user id")
    if not (isinstance(jti, str) and 0 < len(jti) <= 64):
        raise InvalidToken("the token's id is not valid")
    if family is not None and not (isinstance(family, str) and 0 < len(family) <= 64):
        raise InvalidToken("the token's family is not valid")
    if device is not None and not (isinstance(device, str) and 0 < len(device) <= 100):
        raise InvalidToken("the token's device is not valid")
    try:
        issued_at = datetime.fromtimestamp(payload["iat"], tz=UTC)
        expires_at = datetime.fromtimestamp(payload["exp"], tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise InvalidToken("the token's times are out of range") from exc
    return TokenClaims(int(sub), expected_type, jti, issued_at, expires_at, family, device)
