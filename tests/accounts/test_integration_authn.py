"""One authentication path: an ended session, a deactivation or a password reset made through one server
instance refuses the old credentials on the very next request to another instance (no cache anywhere)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.accounts.authn import resolve
from domain.accounts.models import Device
from domain.catalog.models import Customer
from domain.db import Database
from domain.errors import InvalidCredentials, InvalidToken, NotAuthenticated
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error

LOGIN, REFRESH, LOGOUT = "/api/v1/auth/login/", "/api/v1/auth/refresh/", "/api/v1/auth/logout/"
DRIVER1 = {"username": "driver1", "password": "driver1-lpg-2026"}
ADMIN = {"username": "admin", "password": "admin-lpg-2026"}
READ = "/api/v1/customers/"
PUSH = "/api/v1/sync/push"


@pytest.fixture
def two_apps(demo: Database, settings: Settings) -> Iterator[tuple[TestClient, TestClient, Database]]:
    """Two server instances (each its own engine and pool, as two processes would have) on one database."""
    from server import create_app

    other_db = Database(settings)
    with (
        TestClient(create_app(settings, demo), client=("192.0.2.10", 40001)) as a,
        TestClient(create_app(settings, other_db), client=("192.0.2.10", 40002)) as b,
    ):
        yield a, b, other_db
    other_db.dispose()


def login(client: TestClient, creds: dict[str, str]) -> dict[str, Any]:
    response = client.post(LOGIN, json=creds)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def auth(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def admin_patch(client: TestClient, body: dict[str, Any]) -> None:
    admin = login(client, ADMIN)
    driver = client.get("/api/v1/users/?search=driver1", headers=auth(admin["access"])).json()["results"][0]
    response = client.patch(f"/api/v1/users/{driver['id']}/", json=body, headers=auth(admin["access"]))
    assert response.status_code == 200, response.text


def _logout(a: TestClient, pair: dict[str, Any]) -> None:
    assert a.post(LOGOUT, json={"refresh": pair["refresh"]}).status_code == 204


def _reuse(a: TestClient, pair: dict[str, Any]) -> None:
    assert a.post(REFRESH, json={"refresh": pair["refresh"]}).status_code == 200
    assert_error(a.post(REFRESH, json={"refresh": pair["refresh"]}), 401, "token_reused")


def _deactivate(a: TestClient, pair: dict[str, Any]) -> None:
    admin_patch(a, {"active": False})


def _reset(a: TestClient, pair: dict[str, Any]) -> None:
    admin_patch(a, {"password": "a-brand-new-password-2026"})


ENDINGS: dict[str, Callable[[TestClient, dict[str, Any]], None]] = {
    "logout": _logout,
    "refresh_reuse": _reuse,
    "deactivation": _deactivate,
    "password_reset": _reset,
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_an_ended_session_is_refused_on_the_next_request_in_every_instance(
    two_apps: tuple[TestClient, TestClient, Database], ending: str
) -> None:
    a, b, _ = two_apps
    pair = login(a, DRIVER1)
    # Both instances have served the token (any per-process memory of it would be warm now).
    for client in (a, b):
        assert client.get(READ, headers=auth(pair["access"])).status_code == 200
    ENDINGS[ending](a, pair)
    for client in (b, a):
        err = assert_error(client.get(READ, headers=auth(pair["access"])), 401, "invalid_token")
        assert "session has ended" in err["message"] or "deactivated" in err["message"]
    # The push checks the token's user and session inside its own unit: refused there too, nothing written.
    for n, client in enumerate((b, a)):
        change = {
            "client_temp_id": f"after-{ending}-{n}",
            "op": "customer.create",
            "data": {"name": "Ghost", "address": "1 Nowhere"},
        }
        body = {"device_id": f"tab-ended-{n}", "changes": [change]}
        err = assert_error(client.post(PUSH, json=body, headers=auth(pair["access"])), 401, "invalid_token")
        assert "session has ended" in err["message"] or "deactivated" in err["message"]
    written = _.read(
        lambda s: (
            s.execute(select(func.count()).select_from(Customer).where(Customer.name == "Ghost")).scalar_one()
            + s.execute(
                select(func.count()).select_from(Device).where(Device.device_id.like("tab-ended-%"))
            ).scalar_one()
        )
    )
    assert written == 0


def test_a_live_session_pushes_through_its_unit(two_apps: tuple[TestClient, TestClient, Database]) -> None:
    a, b, _ = two_apps
    pair = login(a, DRIVER1)
    change = {"client_temp_id": "live-1", "op": "customer.create", "data": {"name": "Live One", "address": "1 Live Rd"}}
    response = b.post(PUSH, json={"device_id": "tab-live", "changes": [change]}, headers=auth(pair["access"]))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "applied"
    assert_error(b.post(PUSH, json={"device_id": "tab-live", "changes": [change]}), 401, "not_authenticated")


def test_resolve_is_the_one_path_for_bearer_and_basic(
    two_apps: tuple[TestClient, TestClient, Database], demo: Database, settings: Settings
) -> None:
    a, _, other_db = two_apps
    pair = login(a, DRIVER1)
    user = resolve(other_db, settings, f"Bearer {pair['access']}", "192.0.2.10")
    assert user.username == "driver1"
    basic = "Basic " + base64.b64encode(b"driver1:driver1-lpg-2026").decode()
    assert resolve(other_db, settings, basic, "192.0.2.10", allow_basic=True).username == "driver1"
    # Basic is only for surfaces that ask for it (the REST API speaks bearer tokens only).
    with pytest.raises(InvalidToken):
        resolve(other_db, settings, basic, "192.0.2.10")
    with pytest.raises(NotAuthenticated):
        resolve(other_db, settings, None, "192.0.2.10")
    with pytest.raises(InvalidToken):
        resolve(other_db, settings, "Basic %%%", "192.0.2.10", allow_basic=True)
    # A password reset through instance A: instance B's next Basic check refuses the old password at once.
    _reset(a, pair)
    with pytest.raises(InvalidCredentials):
        resolve(other_db, settings, basic, "192.0.2.10", allow_basic=True)
    with pytest.raises(InvalidToken):
        resolve(other_db, settings, f"Bearer {pair['access']}", "192.0.2.10")
    new_basic = "Basic " + base64.b64encode(b"driver1:a-brand-new-password-2026").decode()
    assert resolve(demo, settings, new_basic, "192.0.2.10", allow_basic=True).username == "driver1"
    # A deactivation: Basic with the right password is refused too.
    admin_patch(a, {"active": False})
    with pytest.raises(InvalidCredentials):
        resolve(other_db, settings, new_basic, "192.0.2.10", allow_basic=True)
