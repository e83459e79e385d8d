"""Login, refresh rotation with reuse detection (also raced), logout, and what each leaves in the audit log."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from domain.accounts.models import Device, LoginAttempt, RefreshToken, User
from domain.accounts.sessions import _lock_token
from domain.accounts.tokens import REFRESH, decode_token, encode_token
from domain.audit.models import AuditEntry
from domain.clock import utcnow
from domain.db import Database
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error

LOGIN, REFRESH_URL, LOGOUT = "/api/v1/auth/login/", "/api/v1/auth/refresh/", "/api/v1/auth/logout/"
DRIVER1_PASSWORD = "driver1-lpg-2026"


def login(client: TestClient, username: str = "driver1", password: str = DRIVER1_PASSWORD, **extra: Any) -> Any:
    return client.post(LOGIN, json={"username": username, "password": password, **extra})


def tokens(client: TestClient, **extra: Any) -> dict[str, Any]:
    response = login(client, **extra)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def me(client: TestClient, access: str) -> Any:
    return client.get("/api/v1/users/2/", headers={"Authorization": f"Bearer {access}"})


def audits(db: Database, action: str | None = None) -> list[dict[str, Any]]:
    def read(session: Any) -> list[dict[str, Any]]:
        stmt = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        return [
            {"user_id": a.user_id, "device_id": a.device_id, "action": a.action, "entity_type": a.entity_type,
             "entity_id": a.entity_id, "context": json.loads(a.context)}
            for a in session.scalars(stmt)
        ]  # fmt: skip

    return db.read(read)


# -- login ---------------------------------------------------------------------------------------------


def test_login_answers_the_documented_shape(client: TestClient, demo: Database, settings: Settings) -> None:
    body = tokens(client)
    assert set(body) == {"access", "refresh", "access_expires_in", "user"}
    assert body["user"] == {"id": 2, "username": "driver1", "role": "driver"}
    assert body["access_expires_in"] == settings.access_ttl_seconds == 900
    assert me(client, body["access"]).status_code == 200
    assert decode_token(settings, body["refresh"], REFRESH).user_id == 2


def test_login_records_the_device_on_the_token_and_in_the_audit_but_registers_no_device(
    client: TestClient, demo: Database, settings: Settings
) -> None:
    body = tokens(client, device_id="tab-017")
    jti = decode_token(settings, body["refresh"], REFRESH).jti
    row = demo.read(lambda s: s.execute(select(RefreshToken).where(RefreshToken.jti == jti)).scalar_one())
    assert row.device_id == "tab-017" and row.user_id == 2 and row.used_at is None and row.revoked_at is None
    assert row.expires_at - row.issued_at == timedelta(seconds=settings.refresh_ttl_seconds)
    (entry,) = audits(demo, "login")
    assert entry["user_id"] == 2 and entry["entity_type"] == "user" and entry["entity_id"] == 2
    assert entry["device_id"] == "tab-017"
    assert entry["context"] == {"username": "driver1", "client_addr": "testclient", "device_id": "tab-017"}
    assert demo.read(lambda s: s.execute(select(func.count()).select_from(Device)).scalar_one()) == 0


def test_usernames_are_not_case_sensitive(client: TestClient, demo: Database) -> None:
    assert tokens(client, username=" Driver1 ")["user"]["username"] == "driver1"


def test_passwords_are_taken_exactly_as_typed(client: TestClient, demo: Database) -> None:
    assert_error(login(client, password=DRIVER1_PASSWORD + " "), 401, "invalid_credentials")
    assert_error(login(client, password=DRIVER1_PASSWORD.upper()), 401, "invalid_credentials")


def test_a_wrong_password_is_refused_counted_and_audited(client: TestClient, demo: Database) -> None:
    err = assert_error(login(client, password="guess-1234"), 401, "invalid_credentials")
    assert err["details"] == {}
    (entry,) = audits(demo, "login_failed")
    assert entry["user_id"] == 2 and entry["entity_id"] == 2
    assert entry["context"] == {"username": "driver1", "client_addr": "testclient", "reason": "wrong_password"}
    attempts = demo.read(lambda s: s.execute(select(LoginAttempt.username, LoginAttempt.succeeded)).all())
    assert [tuple(a) for a in attempts] == [("driver1", False)]


def test_an_unknown_username_looks_the_same_and_is_audited_without_an_entity(
    client: TestClient, demo: Database
) -> None:
    unknown = assert_error(login(client, username="nobody", password="secret-guess"), 401, "invalid_credentials")
    wrong = assert_error(login(client, password="secret-guess"), 401, "invalid_credentials")
    assert unknown == wrong  # the answer does not tell whether the username exists
    entry = audits(demo, "login_failed")[0]
    assert entry["user_id"] is None and entry["entity_id"] is None and entry["entity_type"] == "user"
    assert entry["context"]["username"] == "nobody" and entry["context"]["reason"] == "unknown_username"


def test_no_password_is_ever_written_to_the_audit_log(client: TestClient, demo: Database) -> None:
    login(client, username="nobody", password="Sup3r-Secret-Guess")
    login(client, password="Sup3r-Secret-Guess")
    tokens(client)
    raw = demo.read(lambda s: " ".join(s.execute(select(AuditEntry.context)).scalars()))
    assert "Sup3r-Secret-Guess" not in raw and DRIVER1_PASSWORD not in raw
    assert "$argon2" not in raw


def test_a_deactivated_user_cannot_log_in(client: TestClient, demo: Database) -> None:
    demo.run(lambda uow: uow.session.execute(update(User).where(User.id == 2).values(active=False)))
    assert_error(login(client), 401, "invalid_credentials")
    assert audits(demo, "login_failed")[0]["context"]["reason"] == "deactivated"


def test_login_bodies_are_validated(client: TestClient, demo: Database) -> None:
    assert assert_error(client.post(LOGIN, json={"username": "driver1"}), 400, "validation_error")["details"] == {
        "field": "password"
    }
    err = assert_error(login(client, role="admin"), 400, "validation_error")
    assert err["details"]["field"] == "role"
    assert_error(login(client, password="x" * 2000), 400, "validation_error")
    assert_error(login(client, device_id=""), 400, "validation_error")


# -- refresh -------------------------------------------------------------------------------------------


def test_refresh_rotates_both_tokens(client: TestClient, demo: Database, settings: Settings) -> None:
    first = tokens(client, device_id="tab-1")
    response = client.post(REFRESH_URL, json={"refresh": first["refresh"]})
    assert response.status_code == 200, response.text
    second = response.json()
    assert set(second) == {"access", "refresh", "access_expires_in", "user"}
    assert second["refresh"] != first["refresh"] and second["access"] != first["access"]
    assert me(client, second["access"]).status_code == 200
    old, new = (decode_token(settings, t["refresh"], REFRESH) for t in (first, second))
    assert old.family == new.family and new.device_id == "tab-1"
    rows = demo.read(lambda s: {r.jti: r for r in s.scalars(select(RefreshToken))})
    assert rows[old.jti].used_at is not None and rows[old.jti].replaced_by == new.jti
    assert rows[new.jti].used_at is None and rows[new.jti].device_id == "tab-1"
    # The chain goes on: every newest token refreshes once.
    third = client.post(REFRESH_URL, json={"refresh": second["refresh"]}).json()
    assert client.post(REFRESH_URL, json={"refresh": third["refresh"]}).status_code == 200


def test_reuse_of_a_spent_refresh_token_revokes_the_whole_family(client: TestClient, demo: Database) -> None:
    """The thief replays the token the real client already spent: both are locked out, access tokens too."""
    stolen = tokens(client, device_id="tab-1")
    real = client.post(REFRESH_URL, json={"refresh": stolen["refresh"]}).json()
    other_session = tokens(client, device_id="tab-2")

    err = assert_error(client.post(REFRESH_URL, json={"refresh": stolen["refresh"]}), 401, "token_reused")
    assert "log in again" in err["message"]
    assert_error(client.post(REFRESH_URL, json={"refresh": real["refresh"]}), 401, "invalid_token")
    assert_error(me(client, real["access"]), 401, "invalid_token")
    assert_error(me(client, stolen["access"]), 401, "invalid_token")
    # Another login session of the same user is not touched.
    assert me(client, other_session["access"]).status_code == 200
    assert client.post(REFRESH_URL, json={"refresh": other_session["refresh"]}).status_code == 200
    # One audit entry for the detection; replaying again changes nothing and adds nothing.
    (entry,) = audits(demo, "refresh_reused")
    assert entry["user_id"] == 2 and entry["entity_id"] == 2 and entry["device_id"] == "tab-1"
    assert_error(client.post(REFRESH_URL, json={"refresh": stolen["refresh"]}), 401, "token_reused")
    assert len(audits(demo, "refresh_reused")) == 1
    # Logging in again works.
    assert me(client, tokens(client)["access"]).status_code == 200


def test_the_same_refresh_token_sent_twice_at_once_succeeds_exactly_once(client: TestClient, demo: Database) -> None:
    for _ in range(4):
        refresh = tokens(client)["refresh"]
        barrier = threading.Barrier(2)

        def send(token: str = refresh) -> Any:
            barrier.wait()
            return client.post(REFRESH_URL, json={"refresh": token})

        with ThreadPoolExecutor(2) as pool:
            responses = [f.result() for f in [pool.submit(send), pool.submit(send)]]
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 401], [r.text for r in responses]
        loser = next(r for r in responses if r.status_code == 401)
        assert loser.json()["error"]["code"] == "token_reused"
        # The spec's rule holds for the race too: the reuse ended the family, the winner's tokens included.
        winner = next(r for r in responses if r.status_code == 200).json()
        assert_error(client.post(REFRESH_URL, json={"refresh": winner["refresh"]}), 401, "invalid_token")


def test_refresh_waits_for_the_lock_on_its_token_row(client: TestClient, demo: Database, settings: Settings) -> None:
    """Deterministic form of the race: while another transaction holds the token's row (and spends it), a
    refresh of the same token waits, then sees it spent: `token_reused`, never a second new pair."""
    refresh = tokens(client)["refresh"]
    claims = decode_token(settings, refresh, REFRESH)
    with demo.unit() as uow:
        token = _lock_token(uow.session, claims.jti, claims.user_id)
        assert token is not None
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.post, REFRESH_URL, json={"refresh": refresh})
            time.sleep(0.5)
            assert not pending.done(), "the refresh did not wait for the row lock"
            token.used_at = utcnow()
            uow.commit()
            response = pending.result(timeout=30)
    assert_error(response, 401, "token_reused")
    assert demo.read(lambda s: s.execute(select(func.count()).select_from(RefreshToken)).scalar_one()) == 1


def test_an_unknown_or_foreign_refresh_token_is_invalid(client: TestClient, demo: Database, settings: Settings) -> None:
    forged, _ = encode_token(settings, 2, REFRESH, family="f" * 32)  # well signed, but never issued
    assert_error(client.post(REFRESH_URL, json={"refresh": forged}), 401, "invalid_token")
    # A real token id under another subject (only possible with the key, but still refused).
    jti = decode_token(settings, tokens(client)["refresh"], REFRESH).jti
    other, _ = encode_token(settings, 3, REFRESH, jti=jti, family="f" * 32)
    assert_error(client.post(REFRESH_URL, json={"refresh": other}), 401, "invalid_token")
    assert_error(client.post(REFRESH_URL, json={"refresh": "garbage"}), 401, "invalid_token")
    assert_error(client.post(REFRESH_URL, json={}), 400, "validation_error")


def test_a_deactivated_user_cannot_refresh(client: TestClient, demo: Database) -> None:
    pair = tokens(client)
    demo.run(lambda uow: uow.session.execute(update(User).where(User.id == 2).values(active=False)))
    assert_error(client.post(REFRESH_URL, json={"refresh": pair["refresh"]}), 401, "invalid_token")


# -- logout --------------------------------------------------------------------------------------------


def test_logout_ends_the_session_and_its_access_tokens(client: TestClient, demo: Database) -> None:
    pair = tokens(client, device_id="tab-9")
    kept = tokens(client)
    response = client.post(LOGOUT, json={"refresh": pair["refresh"]})
    assert response.status_code == 204 and response.content == b""
    assert_error(client.post(REFRESH_URL, json={"refresh": pair["refresh"]}), 401, "invalid_token")
    assert_error(me(client, pair["access"]), 401, "invalid_token")
    assert me(client, kept["access"]).status_code == 200
    (entry,) = audits(demo, "logout")
    assert entry["user_id"] == 2 and entry["device_id"] == "tab-9" and entry["entity_id"] == 2
    # Twice is no error, and audited once.
    assert client.post(LOGOUT, json={"refresh": pair["refresh"]}).status_code == 204
    assert len(audits(demo, "logout")) == 1


def test_an_access_token_already_verified_stops_working_at_logout_on_every_path(
    client: TestClient, demo: Database
) -> None:
    """The process keeps the tokens it has verified (their signature and claims); it still asks the database
    whether their login session is alive on each request, on a plain endpoint and on a push alike."""
    pair = tokens(client)
    headers = {"Authorization": f"Bearer {pair['access']}"}
    push = {"device_id": "tab-logout", "changes": []}
    for _ in range(2):  # the second time from the verified tokens
        assert me(client, pair["access"]).status_code == 200
        assert client.post("/api/v1/sync/push", json=push, headers=headers).status_code == 200
    assert client.post(LOGOUT, json={"refresh": pair["refresh"]}).status_code == 204
    assert_error(me(client, pair["access"]), 401, "invalid_token")
    assert_error(client.post("/api/v1/sync/push", json=push, headers=headers), 401, "invalid_token")


def test_logout_with_a_rotated_or_expired_token_still_ends_the_family(
    client: TestClient, demo: Database, settings: Settings
) -> None:
    first = tokens(client)
    second = client.post(REFRESH_URL, json={"refresh": first["refresh"]}).json()
    assert client.post(LOGOUT, json={"refresh": first["refresh"]}).status_code == 204
    assert_error(client.post(REFRESH_URL, json={"refresh": second["refresh"]}), 401, "invalid_token")
    # An expired refresh token still names its session; its signature is still checked.
    pair = tokens(client)
    claims = decode_token(settings, pair["refresh"], REFRESH)
    past = utcnow() - timedelta(seconds=settings.refresh_ttl_seconds + 10)
    expired, _ = encode_token(settings, 2, REFRESH, jti=claims.jti, family=claims.family, now=past)
    assert client.post(LOGOUT, json={"refresh": expired}).status_code == 204
    assert_error(me(client, pair["access"]), 401, "invalid_token")
    tampered = jwt.encode({"typ": "refresh"}, "k" * 40, algorithm="HS256")
    assert_error(client.post(LOGOUT, json={"refresh": tampered}), 401, "invalid_token")


# -- HTTP Basic (for the CouchDB-compatible surface) ---------------------------------------------------


def test_basic_credentials_share_the_login_throttle_and_audit(client: TestClient, demo: Database) -> None:
    from domain.accounts.sessions import check_credentials
    from domain.errors import InvalidCredentials, TooManyAttempts

    actor = check_credentials(demo, "Driver1", DRIVER1_PASSWORD, "192.0.2.1")
    assert (actor.id, actor.username, actor.role) == (2, "driver1", "driver")
    assert audits(demo, "login") == []  # a success is not an audit entry per request
    with pytest.raises(InvalidCredentials):
        check_credentials(demo, "driver1", "wrong-password", "192.0.2.1")
    (entry,) = audits(demo, "login_failed")
    assert entry["context"]["via"] == "basic" and entry["context"]["reason"] == "wrong_password"
    for _ in range(4):
        assert_error(login(client, password="wrong-password"), 401, "invalid_credentials")
    with pytest.raises(TooManyAttempts):  # Basic is no way around the login throttle
        check_credentials(demo, "driver1", DRIVER1_PASSWORD, "192.0.2.1")
