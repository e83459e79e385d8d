from tests.rbac.matrix import RbacRow, expect

ADMIN_ONLY = expect(401, 403, 403, 200)
REPORTS = (
    "/api/v1/reports/stock/",
    "/api/v1/reports/sales/",
    "/api/v1/reports/outstanding-invoices/",
    "/api/v1/reports/sync/",
)

ROWS = [
    RbacRow("GET", "/api/schema/", expect(200, 200, 200, 200), note="the OpenAPI document is public"),
    *(RbacRow("GET", path, ADMIN_ONLY, note="reports are admin-only") for path in REPORTS),
]
