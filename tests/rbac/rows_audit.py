"""The audit log is admin-only and read-only: drivers get 403 (the log is not one of their records)."""

from tests.rbac.matrix import RbacRow, Request, expect

ADMIN_ONLY = expect(401, 403, 403, 200)

ROWS = [
    RbacRow(
        "GET",
        "/api/v1/audit/",
        ADMIN_ONLY,
        setup=lambda world: Request(query={"entity_type": "user", "user": "driver1", "date_from": "2020-01-01"}),
        note="filters do not change who may read",
    ),
    RbacRow("GET", "/api/v1/audit/verify/", ADMIN_ONLY),
]
