from tests.rbac.matrix import RbacRow, expect

ROWS = [RbacRow("GET", "/api/v1/health", expect(200, 200, 200, 200))]
