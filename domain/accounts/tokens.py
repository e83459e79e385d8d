"""JWT access and refresh tokens (PyJWT, HS256 pinned). Every claim the checks need is required."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from domain.clock import utcnow
from domain.errors import InvalidToken, TokenExpired
from domain.settings import Settings

ALGORITHM = "HS256"
ACCESS, REFRESH = "access", "refresh"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "typ"]


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
    now = now or utcnow()
    ttl = settings.access_ttl_seconds if token_type == ACCESS else settings.refresh_ttl_seconds
    claims = TokenClaims(user_id, token_type, jti or new_jti(), now, now + timedelta(seconds=ttl), family, device_id)
    payload: dict[str, Any] = {
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


def decode_token(settings: Settings, token: str, expected_type: str) -> TokenClaims:
    """Refuse anything but a well-formed, unexpired HS256 token of the expected type signed with our key."""
    try:
        payload = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],
            options={"require": REQUIRED_CLAIMS, "verify_signature": True, "verify_exp": True, "verify_iat": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from exc
    if payload.get("typ") != expected_type:
        raise InvalidToken(f"a {payload.get('typ')!s} token cannot be used here")
    try:
        user_id = int(payload["sub"])
    except (TypeError, ValueError) as exc:
        raise InvalidToken("the token's subject is not a user id") from exc
    return TokenClaims(
        user_id,
        expected_type,
        str(payload["jti"]),
        datetime.fromtimestamp(payload["iat"], tz=utcnow().tzinfo),
        datetime.fromtimestamp(payload["exp"], tz=utcnow().tzinfo),
        payload.get("fam"),
        payload.get("dev"),
    )
