"""Users: admin-only management, a driver sees only themselves and may change nothing (mass assignment)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from domain.accounts.models import User
from domain.audit.models import AuditEntry
from domain.db import Database
from tests.api.test_integration_http_edge import assert_error

USERS = "/api/v1/users/"
USER_KEYS = {"id", "version", "last_modified", "username", "full_name", "role", "active", "created_at"}


def user_row(db: Database, user_id: int) -> User:
    return db.read(lambda s: s.get(User, user_id))


def audit_entries(db: Database, action: str) -> list[dict[str, Any]]:
    return db.read(
        lambda s: [
            {"user_id": a.user_id, "entity_id": a.entity_id, "context": json.loads(a.context)}
            for a in s.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.user_id.is_not(None)))
        ]
    )


def test_admin_creates_a_user_who_can_log_in(client: TestClient, demo: Database, admin_headers: Any) -> None:
    body = {"username": "Driver3", "password": "a good long password", "role": "driver", "full_name": " Lim Bee "}
    response = client.post(USERS, json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    doc = response.json()
    assert set(doc) == USER_KEYS
    assert doc["username"] == "driver3" and doc["full_name"] == "Lim Bee" and doc["role"] == "driver"
    assert doc["version"] == 1 and doc["active"] is True
    assert client.get(f"{USERS}{doc['id']}/", headers=admin_headers).json() == doc
    login = client.post("/api/v1/auth/login/", json={"username": "driver3", "password": "a good long password"})
    assert login.status_code == 200 and login.json()["user"]["role"] == "driver"
    (entry,) = audit_entries(demo, "create")
    assert entry["user_id"] == 1 and entry["entity_id"] == doc["id"] and entry["context"]["after"] == doc
    assert user_row(demo, doc["id"]).password_hash.startswith("$argon2id$")


def test_usernames_are_unique_whatever_the_case(client: TestClient, demo: Database, admin_headers: Any) -> None:
    body = {"username": "DRIVER1", "password": "a good long password", "role": "driver"}
    err = assert_error(client.post(USERS, json=body, headers=admin_headers), 409, "conflict")
    assert err["details"]["field"] == "username"


def test_new_users_are_validated(client: TestClient, demo: Database, admin_headers: Any) -> None:
    def field(body: dict[str, Any]) -> Any:
        return assert_error(client.post(USERS, json=body, headers=admin_headers), 400, "validation_error")["details"]

    good = {"username": "lim", "password": "a good long password", "role": "driver"}
    assert field({**good, "password": "short"})["field"] == "password"
    assert field({**good, "role": "manager"})["field"] == "role"
    assert field({**good, "username": "has space"})["field"] == "username"
    assert field({**good, "password_hash": "x"})["field"] == "password_hash"
    for owned in ("version", "created_at"):
        err = assert_error(client.post(USERS, json={**good, owned: 1}, headers=admin_headers), 400, "read_only_field")
        assert err["details"]["field"] == owned


def test_admin_changes_role_active_and_name_with_a_version_and_an_audit_entry(
    client: TestClient, demo: Database, admin_headers: Any
) -> None:
    before = client.get(f"{USERS}2/", headers=admin_headers).json()
    response = client.patch(f"{USERS}2/", json={"full_name": "Tan Ah Kow Jr", "role": "admin"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["role"] == "admin" and after["full_name"] == "Tan Ah Kow Jr" and after["version"] == 2
    (entry,) = audit_entries(demo, "update")
    assert entry["entity_id"] == 2 and entry["context"]["before"] == before and entry["context"]["after"] == after
    # Sending what is already there changes nothing: no new version, no audit entry.
    same = client.patch(f"{USERS}2/", json={"role": "admin"}, headers=admin_headers).json()
    assert same["version"] == 2 and len(audit_entries(demo, "update")) == 1


def test_a_role_change_takes_effect_on_the_next_request(
    client: TestClient, demo: Database, admin_headers: Any, driver_headers: Any
) -> None:
    assert client.get(USERS, headers=driver_headers).status_code == 403
    client.patch(f"{USERS}2/", json={"role": "admin"}, headers=admin_headers)
    assert client.get(USERS, headers=driver_headers).status_code == 200  # same token, new role


def test_deactivation_and_password_reset_end_every_session(
    client: TestClient, demo: Database, admin_headers: Any
) -> None:
    login = {"username": "driver1", "password": "driver1-lpg-2026"}
    pair = client.post("/api/v1/auth/login/", json=login).json()
    reset = client.patch(f"{USERS}2/", json={"password": "a brand new password"}, headers=admin_headers)
    assert reset.status_code == 200 and reset.json()["version"] == 2
    auth = {"Authorization": f"Bearer {pair['access']}"}
    assert_error(client.get(f"{USERS}2/", headers=auth), 401, "invalid_token")
    assert_error(client.post("/api/v1/auth/refresh/", json={"refresh": pair["refresh"]}), 401, "invalid_token")
    assert_error(client.post("/api/v1/auth/login/", json=login), 401, "invalid_credentials")
    new = {"username": "driver1", "password": "a brand new password"}
    pair = client.post("/api/v1/auth/login/", json=new).json()
    (entry,) = audit_entries(demo, "update")
    assert entry["context"]["password_reset"] is True and entry["context"]["sessions_ended"] == 1
    assert "a brand new password" not in json.dumps(entry) and "argon2" not in json.dumps(entry)

    client.patch(f"{USERS}2/", json={"active": False}, headers=admin_headers)
    assert_error(client.post("/api/v1/auth/refresh/", json={"refresh": pair["refresh"]}), 401, "invalid_token")
    assert_error(client.post("/api/v1/auth/login/", json=new), 401, "invalid_credentials")
    client.patch(f"{USERS}2/", json={"active": True}, headers=admin_headers)
    assert client.post("/api/v1/auth/login/", json=new).status_code == 200


def test_a_driver_may_change_nothing_on_their_own_record(
    client: TestClient, demo: Database, driver_headers: Any
) -> None:
    """Mass assignment: each field a driver sends is refused by name, and nothing changes."""
    assert client.get(f"{USERS}2/", headers=driver_headers).json()["role"] == "driver"
    for body in ({"role": "admin"}, {"active": True}, {"password": "a brand new password"}, {"full_name": "X"}):
        err = assert_error(client.patch(f"{USERS}2/", json=body, headers=driver_headers), 400, "read_only_field")
        assert err["details"]["field"] == next(iter(body))
    err = assert_error(
        client.patch(f"{USERS}2/", json={"username": "boss"}, headers=driver_headers), 400, "read_only_field"
    )
    assert err["details"]["field"] == "username"
    row = user_row(demo, 2)
    assert (row.role, row.full_name, row.version, row.username) == ("driver", "Tan Ah Kow", 1, "driver1")
    assert audit_entries(demo, "update") == []


def test_another_drivers_record_is_404_like_a_missing_one(
    client: TestClient, demo: Database, other_driver_headers: Any, admin_headers: Any
) -> None:
    for method in ("GET", "PATCH"):
        kwargs: dict[str, Any] = {"headers": other_driver_headers}
        if method == "PATCH":
            kwargs["json"] = {"role": "admin"}
        existing = assert_error(client.request(method, f"{USERS}2/", **kwargs), 404, "not_found")
        missing = assert_error(client.request(method, f"{USERS}999/", **kwargs), 404, "not_found")
        assert existing["message"].replace("2", "N") == missing["message"].replace("999", "N")
    assert_error(client.get(f"{USERS}999/", headers=admin_headers), 404, "not_found")
    assert_error(client.patch(f"{USERS}999/", json={"role": "admin"}, headers=admin_headers), 404, "not_found")
    assert user_row(demo, 2).role == "driver"


def test_the_last_active_admin_stays(client: TestClient, demo: Database, admin_headers: Any) -> None:
    for body in ({"role": "driver"}, {"active": False}):
        err = assert_error(client.patch(f"{USERS}1/", json=body, headers=admin_headers), 409, "invalid_state")
        assert err["details"] == {"entity": "user", "id": 1}
    client.patch(f"{USERS}3/", json={"role": "admin"}, headers=admin_headers)
    assert client.patch(f"{USERS}1/", json={"active": False}, headers=admin_headers).status_code == 200
    # The remaining admin (driver2, promoted) may not go too.
    from tests.conftest import bearer

    other_admin = bearer(demo.settings, 3)
    assert_error(client.patch(f"{USERS}3/", json={"role": "driver"}, headers=other_admin), 409, "invalid_state")


def test_the_user_list_filters_and_pages(client: TestClient, demo: Database, admin_headers: Any) -> None:
    everyone = client.get(USERS, headers=admin_headers).json()
    assert everyone["count"] == 3 and [u["username"] for u in everyone["results"]] == ["admin", "driver1", "driver2"]
    assert all(set(u) == USER_KEYS for u in everyone["results"])
    drivers = client.get(USERS, params={"role": "driver"}, headers=admin_headers).json()
    assert [u["id"] for u in drivers["results"]] == [2, 3]
    client.patch(f"{USERS}3/", json={"active": False}, headers=admin_headers)
    active = client.get(USERS, params={"active": "false"}, headers=admin_headers).json()
    assert [u["id"] for u in active["results"]] == [3]
    found = client.get(USERS, params={"search": "RAJAN"}, headers=admin_headers).json()
    assert [u["username"] for u in found["results"]] == ["driver2"]
    assert client.get(USERS, params={"search": "%"}, headers=admin_headers).json()["count"] == 0
    page = client.get(USERS, params={"page_size": 2, "page": 2}, headers=admin_headers).json()
    assert [u["id"] for u in page["results"]] == [3] and page["next"] is None and page["previous"]
    assert_error(client.get(USERS, params={"role": "boss"}, headers=admin_headers), 400, "validation_error")
