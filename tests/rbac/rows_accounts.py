"""Accounts: login, refresh and logout are open to everyone (the credentials are the authorization); users
are admin business, except that a driver may read their own user record (another's is 404) and may change
nothing on it (`read_only_field`)."""

from __future__ import annotations

import itertools

from tests.rbac.matrix import RbacRow, Request, World, expect

DEMO_PASSWORDS = {"driver1": "driver1-lpg-2026"}
_serial = itertools.count(1)


def _credentials(world: World) -> Request:
    return Request(json={"username": "driver1", "password": DEMO_PASSWORDS["driver1"], "device_id": "tab-rbac"})


def _fresh_refresh(world: World) -> Request:
    response = world.client.post("/api/v1/auth/login/", json=_credentials(world).json)
    assert response.status_code == 200, response.text
    return Request(json={"refresh": response.json()["refresh"]})


def _new_user(world: World) -> Request:
    return Request(json={"username": f"rbac-user-{next(_serial)}", "password": "a-long-password", "role": "driver"})


def _driver1(world: World) -> Request:
    return Request(path={"id": world.users["driver1"]})


def _rename_driver1(world: World) -> Request:
    return Request(path={"id": world.users["driver1"]}, json={"full_name": f"Tan Ah Kow {next(_serial)}"})


ROWS = [
    RbacRow("POST", "/api/v1/auth/login/", expect(200, 200, 200, 200), _credentials),
    RbacRow("POST", "/api/v1/auth/refresh/", expect(200, 200, 200, 200), _fresh_refresh),
    RbacRow("POST", "/api/v1/auth/logout/", expect(204, 204, 204, 204), _fresh_refresh),
    RbacRow("GET", "/api/v1/users/", expect(401, (403, "forbidden"), (403, "forbidden"), 200)),
    RbacRow("POST", "/api/v1/users/", expect(401, (403, "forbidden"), (403, "forbidden"), 201), _new_user),
    RbacRow("GET", "/api/v1/users/{id:int}/", expect(401, 200, (404, "not_found"), 200), _driver1),
    RbacRow(
        "PATCH",
        "/api/v1/users/{id:int}/",
        expect(401, (400, "read_only_field"), (404, "not_found"), 200),
        _rename_driver1,
        note="a driver may change nothing on their own user record; another's is 404",
    ),
]
