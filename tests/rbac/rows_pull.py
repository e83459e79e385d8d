"""Pull endpoints: every user pulls (scoped) and keeps checkpoints; the device registry is admin-only."""

from tests.rbac.matrix import RbacRow, Request, World, expect


def _checkpoint(world: World) -> Request:
    return Request(path={"name": "main"}, json={"seq": 1})


ROWS = [
    RbacRow("GET", "/api/v1/sync/changes", expect(401, 200, 200, 200)),
    RbacRow(
        "GET",
        "/api/v1/sync/checkpoints/{name}",
        expect(401, 404, 404, 404),
        setup=lambda w: Request(path={"name": "never-set"}),
    ),
    RbacRow("PUT", "/api/v1/sync/checkpoints/{name}", expect(401, 200, 200, 200), setup=_checkpoint),
    RbacRow("GET", "/api/v1/sync/devices", expect(401, 403, 403, 200)),
]
