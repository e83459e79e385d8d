"""Audit cases of the accounts services: users (create, update; domain/accounts/services.py) and the
session life cycle (login, failed login, logout, refresh reuse; domain/accounts/sessions.py). Login-type
entries carry who and from where (username, client address, device), never a password or its hash; a
refused change and a change that changes nothing write no entry."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.support.audit_cases import AuditCase, AuditWorld, entry

LOGIN, REFRESH, LOGOUT = "/api/v1/auth/login/", "/api/v1/auth/refresh/", "/api/v1/auth/logout/"
DRIVER1_PASSWORD = "driver1-lpg-2026"
UPDATE = ("before", "after")
WHO = ("username", "client_addr")


def ctx(log: list[Any], n: int = -1) -> dict[str, Any]:
    return orjson.loads(log[n].context)  # type: ignore[no-any-return]


def no_secrets(log: list[Any], *secrets: str) -> None:
    for e in log:
        text = e.context
        assert "password_hash" not in text and "argon2" not in text, text
        for secret in secrets:
            assert secret not in text, f"a password is in the log: {text}"


# -- users -----------------------------------------------------------------------------------------------


def create_user(world: AuditWorld) -> Any:
    body = {"username": "driver3", "password": "s3cret-pass-word", "role": "driver", "full_name": "Lee Boon"}
    r = world.client.post("/api/v1/users/", json=body, headers=world.headers["admin"])
    assert r.status_code == 201, r.text
    return r.json()


def check_create_user(world: AuditWorld, result: Any, log: list[Any]) -> None:
    after = ctx(log)["after"]
    assert (after["username"], after["role"], after["id"]) == ("driver3", "driver", result["id"])
    assert log[0].entity_id == result["id"]
    no_secrets(log, "s3cret-pass-word")


def update_user(body: dict[str, Any], status: int = 200, role: str = "admin", target: str = "driver") -> Any:
    def perform(world: AuditWorld) -> Any:
        r = world.client.patch(f"/api/v1/users/{world.users[target]}/", json=body, headers=world.headers[role])
        assert r.status_code == status, r.text
        return r.json()

    return perform


def check_role_change(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log)
    assert (c["before"]["role"], c["after"]["role"]) == ("driver", "admin")
    assert (c["before"]["full_name"], c["after"]["full_name"]) == ("Tan Ah Kow", "Tan Ah Kow Senior")
    assert c["after"]["version"] == c["before"]["version"] + 1 and c["sessions_ended"] == 0


def reset_password(world: AuditWorld) -> Any:
    session = login(world)  # one live session, ended by the reset
    r = world.client.patch(
        f"/api/v1/users/{world.users['driver']}/", json={"password": "brand-new-pass-1"}, headers=world.headers["admin"]
    )
    assert r.status_code == 200, r.text
    assert world.client.post(REFRESH, json={"refresh": session["refresh"]}).status_code == 401
    return r.json()


def check_reset(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log)
    assert c["password_reset"] is True and c["sessions_ended"] == 1
    no_secrets(log, "brand-new-pass-1", DRIVER1_PASSWORD)


def deactivate(world: AuditWorld) -> Any:
    return update_user({"active": False})(world)


def check_deactivate(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log)
    assert (c["before"]["active"], c["after"]["active"]) == (True, False)


# -- sessions --------------------------------------------------------------------------------------------


def login(world: AuditWorld, password: str = DRIVER1_PASSWORD, status: int = 200, **extra: Any) -> Any:
    r = world.client.post(LOGIN, json={"username": "driver1", "password": password, **extra})
    assert r.status_code == status, r.text
    return r.json()


def check_login(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log, 0)
    assert (c["username"], c["device_id"]) == ("driver1", "tab-7")
    assert log[0].entity_id == world.users["driver"]
    no_secrets(log, DRIVER1_PASSWORD)


def failed_login(world: AuditWorld) -> Any:
    return login(world, "not-the-password", status=401, device_id="tab-7")


def check_failed(reason: str) -> Any:
    def check(world: AuditWorld, result: Any, log: list[Any]) -> None:
        c = ctx(log)
        assert c["reason"] == reason and c["username"] == "driver1"
        assert log[-1].entity_id == world.users["driver"]
        no_secrets(log, "not-the-password", DRIVER1_PASSWORD)

    return check


def deactivated_login(world: AuditWorld) -> Any:
    deactivate(world)
    return login(world, status=401)


def basic_auth_failure(world: AuditWorld) -> Any:
    token = base64.b64encode(b"driver1:not-the-password").decode()
    r = world.client.get("/couchdb/lpg/", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401, r.text
    return None


def check_basic(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log)
    assert (c["reason"], c["via"]) == ("wrong_password", "basic")


def logout(world: AuditWorld) -> Any:
    session = login(world, device_id="tab-7")
    r = world.client.post(LOGOUT, json={"refresh": session["refresh"]})
    assert r.status_code == 204, r.text
    r = world.client.post(LOGOUT, json={"refresh": session["refresh"]})  # a second logout: nothing more
    assert r.status_code == 204, r.text
    return session


def check_logout(world: AuditWorld, result: Any, log: list[Any]) -> None:
    assert ctx(log)["device_id"] == "tab-7" and log[-1].entity_id == world.users["driver"]


def refresh_then_reuse(world: AuditWorld) -> Any:
    first = login(world, device_id="tab-7")
    second = world.client.post(REFRESH, json={"refresh": first["refresh"]})  # an ordinary refresh: no entry
    assert second.status_code == 200, second.text
    reused = world.client.post(REFRESH, json={"refresh": first["refresh"]})
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "token_reused", reused.text
    return reused.json()


def check_reuse(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = ctx(log)
    assert c["sessions_revoked"] == 2 and c["device_id"] == "tab-7" and c["used_at"]


CASES = [
    AuditCase("accounts_create_user", create_user, [entry("create", "user", actor="admin")], check=check_create_user),
    AuditCase(
        "accounts_update_user_role_and_name",
        update_user({"role": "admin", "full_name": "Tan Ah Kow Senior"}),
        [entry("update", "user", *UPDATE, "sessions_ended", actor="admin")],
        check=check_role_change,
    ),
    AuditCase(
        "accounts_password_reset_ends_sessions",
        reset_password,
        [
            entry("login", "user", *WHO, actor="driver"),
            entry("update", "user", *UPDATE, "sessions_ended", "password_reset", actor="admin"),
        ],
        ordered=True,
        check=check_reset,
    ),
    AuditCase(
        "accounts_deactivate_user",
        deactivate,
        [entry("update", "user", *UPDATE, actor="admin")],
        check=check_deactivate,
    ),
    AuditCase(
        "accounts_update_user_with_nothing_different_writes_nothing",
        update_user({"role": "driver", "full_name": "Tan Ah Kow"}),
        [],
    ),
    AuditCase(
        "accounts_demote_last_admin_writes_nothing",
        update_user({"role": "driver"}, status=409, target="admin"),
        [],
    ),
    AuditCase(
        "accounts_driver_changes_own_name_writes_nothing",
        update_user({"full_name": "Me"}, status=400, role="driver"),
        [],
    ),
    AuditCase(
        "accounts_login",
        lambda w: login(w, device_id="tab-7"),
        [entry("login", "user", *WHO, "device_id", actor="driver", device="tab-7")],
        check=check_login,
    ),
    AuditCase(
        "accounts_failed_login_wrong_password",
        failed_login,
        [entry("login_failed", "user", *WHO, "reason", actor="driver", device="tab-7")],
        check=check_failed("wrong_password"),
    ),
    AuditCase(
        "accounts_failed_login_deactivated",
        deactivated_login,
        [entry("update", "user", *UPDATE), entry("login_failed", "user", *WHO, "reason", actor="driver", device=None)],
        ordered=True,
        check=check_failed("deactivated"),
    ),
    AuditCase(
        "accounts_failed_basic_auth",
        basic_auth_failure,
        [entry("login_failed", "user", *WHO, "reason", "via", actor="driver", device=None)],
        check=check_basic,
    ),
    AuditCase(
        "accounts_logout",
        logout,
        [entry("login", "user", *WHO), entry("logout", "user", "device_id", actor="driver", device="tab-7")],
        ordered=True,
        check=check_logout,
    ),
    AuditCase(
        "accounts_refresh_reuse",
        refresh_then_reuse,
        [
            entry("login", "user", *WHO),
            entry("refresh_reused", "user", "device_id", "used_at", "sessions_revoked", actor="driver", device="tab-7"),
        ],
        ordered=True,
        check=check_reuse,
    ),
]
