"""Each token attack is refused with the right code, on a real endpoint behind the bearer check."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from domain.accounts import tokens
from domain.accounts.models import User
from domain.accounts.tokens import ACCESS, ISSUER, REFRESH, decode_token, encode_token
from domain.clock import utcnow
from domain.db import Database
from domain.errors import InvalidToken, TokenExpired
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error
from tests.conftest import SECRET

DRIVER1 = 2
PROTECTED = f"/api/v1/users/{DRIVER1}/"  # driver1 may read their own record: a plain USER endpoint


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(DRIVER1),
        "typ": ACCESS,
        "jti": "a" * 32,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def get(client: TestClient, token: str) -> Any:
    return client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})


def test_a_well_formed_token_is_accepted(client: TestClient, demo: Database) -> None:
    """The baseline every attack below differs from in exactly one way."""
    response = get(client, signed(claims()))
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "driver1"


def test_alg_none_is_refused(client: TestClient, demo: Database) -> None:
    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims()).encode()) + "."
    err = assert_error(get(client, unsigned), 401, "invalid_token")
    assert "alg" in err["message"].lower()
    # The same with `None` spelled in other cases, and with the original HS256 signature kept.
    good = signed(claims())
    for alg in ("None", "NONE"):
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        assert_error(get(client, header + "." + good.split(".", 1)[1]), 401, "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_algorithm_is_refused_even_with_our_key(client: TestClient, demo: Database, algorithm: str) -> None:
    assert_error(get(client, signed(claims(), algorithm=algorithm)), 401, "invalid_token")


def test_header_swapped_to_another_algorithm_is_refused(client: TestClient, demo: Database) -> None:
    """An HS256 signature presented under an RS256 header (the key-confusion trick) is refused."""
    _, payload, signature = signed(claims()).split(".")
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    assert_error(get(client, f"{header}.{payload}.{signature}"), 401, "invalid_token")


def test_wrong_signature_is_refused(client: TestClient, demo: Database) -> None:
    assert_error(get(client, signed(claims(), key="another-secret-key-" + "y" * 40)), 401, "invalid_token")


def test_tampered_payload_is_refused(client: TestClient, demo: Database) -> None:
    """driver1's genuine token with its subject changed to the admin keeps its signature: refused."""
    header, _, signature = signed(claims()).split(".")
    forged = b64(json.dumps(claims(sub="1")).encode())
    assert_error(get(client, f"{header}.{forged}.{signature}"), 401, "invalid_token")


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "jti", "typ", "iss"])
def test_a_token_without_a_required_claim_is_refused(client: TestClient, demo: Database, missing: str) -> None:
    err = assert_error(get(client, signed(claims(**{missing: None}))), 401, "invalid_token")
    assert missing in err["message"]


@pytest.mark.parametrize(
    "bad",
    [
        {"sub": "admin"},
        {"sub": 2},
        {"sub": "0"},
        {"sub": "99999999999999999999999"},
        {"iss": "someone-else"},
        {"typ": "id"},
        {"jti": 12},
        {"iat": int(time.time()) + 3600},  # issued in the future
        {"nbf": int(time.time()) + 3600},
        {"exp": 10**20},  # out of any clock's range
        {"exp": "tomorrow"},
        {"aud": "another-service"},
    ],
    ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()),
)
def test_malformed_claims_are_refused(client: TestClient, demo: Database, bad: dict[str, Any]) -> None:
    assert_error(get(client, signed(claims(**bad))), 401, "invalid_token")


def test_a_refresh_token_is_not_an_access_token(client: TestClient, demo: Database, settings: Settings) -> None:
    refresh, _ = encode_token(settings, DRIVER1, REFRESH, family="f" * 32)
    err = assert_error(get(client, refresh), 401, "invalid_token")
    assert "refresh" in err["message"]


def test_an_access_token_is_not_a_refresh_token(client: TestClient, demo: Database, settings: Settings) -> None:
    access, _ = encode_token(settings, DRIVER1, ACCESS)
    assert_error(client.post("/api/v1/auth/refresh/", json={"refresh": access}), 401, "invalid_token")
    assert_error(client.post("/api/v1/auth/logout/", json={"refresh": access}), 401, "invalid_token")


def test_an_expired_token_is_token_expired(client: TestClient, demo: Database, settings: Settings) -> None:
    old, _ = encode_token(settings, DRIVER1, ACCESS, now=utcnow() - timedelta(seconds=settings.access_ttl_seconds + 60))
    response = get(client, old)
    assert_error(response, 401, "token_expired")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="token_expired"'
    # Still signature first: an expired token with a wrong signature is not "expired", it is invalid.
    forged = signed(claims(iat=int(time.time()) - 4000, exp=int(time.time()) - 3000), key="x" * 48)
    assert_error(get(client, forged), 401, "invalid_token")


def test_an_expired_refresh_token_cannot_refresh(client: TestClient, demo: Database, settings: Settings) -> None:
    past = utcnow() - timedelta(seconds=settings.refresh_ttl_seconds + 60)
    old, _ = encode_token(settings, DRIVER1, REFRESH, family="f" * 32, now=past)
    assert_error(client.post("/api/v1/auth/refresh/", json={"refresh": old}), 401, "token_expired")


def test_a_deactivated_users_token_stops_working_at_once(
    client: TestClient, demo: Database, driver_headers: dict[str, str]
) -> None:
    assert client.get(PROTECTED, headers=driver_headers).status_code == 200
    demo.run(lambda uow: uow.session.execute(update(User).where(User.id == DRIVER1).values(active=False)))
    assert_error(client.get(PROTECTED, headers=driver_headers), 401, "invalid_token")


def test_a_token_for_a_user_that_does_not_exist(client: TestClient, demo: Database) -> None:
    assert_error(get(client, signed(claims(sub="4242"))), 401, "invalid_token")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic ZHJpdmVyMTpkcml2ZXIxLWxwZy0yMDI2", "Token abc", "Bearer not.a.jwt", "Bearer x"],
)
def test_malformed_authorization_headers(client: TestClient, demo: Database, header: str) -> None:
    assert_error(client.get(PROTECTED, headers={"Authorization": header}), 401, "invalid_token")


def test_no_token_is_not_authenticated(client: TestClient, demo: Database) -> None:
    response = client.get(PROTECTED)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_public_endpoints_ignore_a_stale_authorization_header(
    client: TestClient, demo: Database, settings: Settings
) -> None:
    """A tablet that still sends its expired access token while logging in again is not refused for it."""
    old, _ = encode_token(settings, DRIVER1, ACCESS, now=utcnow() - timedelta(hours=1))
    response = client.post(
        "/api/v1/auth/login/",
        json={"username": "driver1", "password": "driver1-lpg-2026"},
        headers={"Authorization": f"Bearer {old}"},
    )
    assert response.status_code == 200, response.text


def test_tokens_carry_only_what_they_need(settings: Settings) -> None:
    """No role, no name, no password material in a token: the role is read from the database per request."""
    token, _ = encode_token(settings, DRIVER1, ACCESS, family="f" * 32, device_id="tab-1")
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=ISSUER)
    assert set(payload) == {"iss", "sub", "typ", "jti", "iat", "exp", "fam", "dev"}
    assert payload["exp"] - payload["iat"] == settings.access_ttl_seconds == 900
    refresh, _ = encode_token(settings, DRIVER1, REFRESH)
    payload = jwt.decode(refresh, SECRET, algorithms=["HS256"], issuer=ISSUER)
    assert payload["exp"] - payload["iat"] == settings.refresh_ttl_seconds == 7 * 24 * 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_verified_token_is_checked_for_expiry_again_on_each_use(
    client: TestClient, demo: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process remembers the tokens it has verified, never past their expiry (and PyJWT's leeway)."""
    token, issued = encode_token(settings, DRIVER1, ACCESS)
    assert get(client, token).status_code == 200
    assert decode_token(settings, token, ACCESS) == issued  # from what the request verified
    expiry = issued.expires_at.timestamp()
    monkeypatch.setattr(tokens, "time", type("Clock", (), {"time": staticmethod(lambda: expiry + 4)}))
    assert decode_token(settings, token, ACCESS) == issued  # inside the leeway
    monkeypatch.setattr(tokens, "time", type("Clock", (), {"time": staticmethod(lambda: expiry + 5)}))
    with pytest.raises(TokenExpired):  # PyJWT's own bound: expired once exp <= now - leeway
        decode_token(settings, token, ACCESS)


def test_a_verified_token_is_taken_only_for_its_type_and_key(
    client: TestClient, demo: Database, settings: Settings
) -> None:
    access, _ = encode_token(settings, DRIVER1, ACCESS)
    refresh, _ = encode_token(settings, DRIVER1, REFRESH)
    assert decode_token(settings, access, ACCESS).token_type == ACCESS
    assert decode_token(settings, refresh, REFRESH).token_type == REFRESH
    with pytest.raises(InvalidToken):
        decode_token(settings, access, REFRESH)
    assert_error(get(client, refresh), 401, "invalid_token")
    other = Settings.from_env({"LPG_SECRET_KEY": "another-key-" + "z" * 40})
    with pytest.raises(InvalidToken):
        decode_token(other, access, ACCESS)


def test_the_verified_tokens_are_bounded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens.VERIFIED, "limit", 3)
    tokens.VERIFIED.clear()
    made = [encode_token(settings, DRIVER1, ACCESS)[0] for _ in range(5)]
    for token in made:
        decode_token(settings, token, ACCESS)
    assert len(tokens.VERIFIED.oldest_first()) == 3
    assert [key[2] for key in tokens.VERIFIED.oldest_first()] == made[2:]  # the oldest went first
