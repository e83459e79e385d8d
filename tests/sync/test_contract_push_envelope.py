"""The push envelope and the rules that hold whatever the ops: limits, encodings, devices, rejections."""

from __future__ import annotations

from typing import Any

import msgpack
from starlette.testclient import TestClient

from domain.settings import Settings
from tests.conftest import bearer, user_id

PUSH = "/api/v1/sync/push"


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def test_bad_envelopes_are_400(client: TestClient, driver_headers: dict[str, str]) -> None:
    post = lambda body: client.post(PUSH, json=body, headers=driver_headers)  # noqa: E731
    assert error_of(post({"changes": []}), 400, "validation_error")["details"]["field"] == "device_id"
    assert error_of(post({"device_id": "tab-1"}), 400, "validation_error")["details"]["field"] == "changes"
    error_of(post({"device_id": "tab-1", "changes": {}}), 400, "validation_error")
    error_of(post({"device_id": "", "changes": []}), 400, "validation_error")
    error_of(post({"device_id": "tab-1", "changes": [], "surprise": 1}), 400, "validation_error")
    error_of(post({"device_id": "tab-1", "changes": [{"op": "customer.create", "data": {}}]}), 400, "validation_error")
    error_of(
        post({"device_id": "tab-1", "changes": [{"client_temp_id": "t", "op": "x", "data": []}]}),
        400,
        "validation_error",
    )
    error_of(post({"device_id": "tab-1", "atomic": "yes", "changes": []}), 400, "validation_error")
    err = error_of(post({"device_id": "tab-1", "changes": [], "client": {"protocol": 2}}), 400, "unsupported_protocol")
    assert err["details"]["supported"] == [1]
    error_of(client.post(PUSH, content=b"{", headers=driver_headers), 400, "malformed_body")
    error_of(
        client.post(PUSH, content=b"x", headers={**driver_headers, "Content-Type": "text/csv"}),
        415,
        "unsupported_media_type",
    )


def test_more_than_500_changes_is_413(client: TestClient, driver_headers: dict[str, str]) -> None:
    changes = [{"client_temp_id": f"t-{i}", "op": "customer.create", "data": {"name": "x"}} for i in range(501)]
    err = error_of(
        client.post(PUSH, json={"device_id": "tab-1", "changes": changes}, headers=driver_headers),
        413,
        "payload_too_large",
    )
    assert "500" in err["message"]


def test_over_5_mib_is_413(client: TestClient, driver_headers: dict[str, str]) -> None:
    body = b'{"device_id": "tab-1", "changes": [], "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    error_of(client.post(PUSH, content=body, headers=driver_headers), 413, "payload_too_large")


def test_anonymous_is_401(client: TestClient, demo: Any) -> None:
    error_of(client.post(PUSH, json={"device_id": "tab-1", "changes": []}), 401, "not_authenticated")


def test_unknown_op_is_a_rejected_change_not_an_error(client: TestClient, driver_headers: dict[str, str]) -> None:
    body = {"device_id": "tab-1", "changes": [{"client_temp_id": "t-1", "op": "customer.delete", "data": {}}]}
    response = client.post(PUSH, json=body, headers=driver_headers)
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["status"] == "rejected" and result["error"]["code"] == "validation_error"
    assert result["error"]["details"]["field"] == "op"
    assert response.json()["id_map"] == {}


def test_the_response_shape_in_both_encodings(client: TestClient, driver_headers: dict[str, str]) -> None:
    body = {
        "device_id": "tab-1",
        "changes": [],
        "client": {"app_version": "3.4.1", "protocol": 1, "device_time": "2026-11-24T11:15:30+08:00"},
    }
    as_json = client.post(PUSH, json=body, headers=driver_headers).json()
    packed = client.post(
        PUSH,
        content=msgpack.packb(body),
        headers={**driver_headers, "Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )
    assert packed.headers["content-type"] == "application/msgpack"
    as_msgpack = msgpack.unpackb(packed.content)
    for response in (as_json, as_msgpack):
        assert set(response) == {"server_ts", "id_map", "results", "last_seq"}
        assert response["server_ts"].endswith("Z") and len(response["server_ts"]) == 27
        assert isinstance(response["last_seq"], int)


def test_a_device_belongs_to_its_first_user(client: TestClient, demo: Any, settings: Settings) -> None:
    first = bearer(settings, user_id(demo, "driver1"))
    second = bearer(settings, user_id(demo, "driver2"))
    assert client.post(PUSH, json={"device_id": "tab-9", "changes": []}, headers=first).status_code == 200
    err = error_of(client.post(PUSH, json={"device_id": "tab-9", "changes": []}, headers=second), 403, "forbidden")
    assert err["details"]["device_id"] == "tab-9"


def test_rejections_are_listed_for_support(
    client: TestClient, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    change = {"client_temp_id": "t-1", "op": "customer.delete", "data": {"id": 1}}
    for _ in range(2):  # a refused change is evaluated again when sent again, and refused again
        client.post(PUSH, json={"device_id": "tab-1", "changes": [change]}, headers=driver_headers)
    listed = client.get(
        "/api/v1/sync/rejections", params={"device_id": "tab-1", "open": "true"}, headers=admin_headers
    ).json()
    assert listed["count"] == 2
    first = listed["results"][0]
    assert first["payload"] == change and first["error"]["code"] == "validation_error"
    assert first["resolved_at"] is None and first["created_at"].endswith("Z")
    assert (
        client.get("/api/v1/sync/rejections", params={"device_id": "tab-2"}, headers=admin_headers).json()["count"] == 0
    )
    error_of(
        client.get("/api/v1/sync/rejections", params={"open": "maybe"}, headers=admin_headers), 400, "validation_error"
    )
