import uuid

from tests.rbac.matrix import RbacRow, Request, World, expect


def _device_with_rejection(world: World) -> Request:
    """driver1's tablet pushed once, and one of its changes was refused (an op the server does not know)."""
    body = {"device_id": "tab-rbac", "changes": [{"client_temp_id": "t-1", "op": "no.such_op", "data": {}}]}
    response = world.client.post("/api/v1/sync/push", json=body, headers=world.headers["driver"])
    assert response.status_code == 200, response.text
    return Request(json={"device_id": "tab-rbac", "changes": body["changes"], "dry_run": True})


def _push(world: World) -> Request:
    return Request(json={"device_id": f"tab-{uuid.uuid4().hex[:8]}", "changes": []})


def _replay_rejections(world: World) -> Request:
    _device_with_rejection(world)
    return Request(json={"device_id": "tab-rbac", "dry_run": True})


ROWS = [
    RbacRow(
        "POST",
        "/api/v1/sync/push",
        expect(401, 200, 200, 200),
        _push,
        note="any user may push from a new device; the first push registers it",
    ),
    RbacRow("POST", "/api/v1/sync/replay", expect(401, 403, 403, 200), _device_with_rejection),
    RbacRow("GET", "/api/v1/sync/rejections", expect(401, 403, 403, 200)),
    RbacRow("POST", "/api/v1/sync/rejections/replay", expect(401, 403, 403, 200), _replay_rejections),
]
