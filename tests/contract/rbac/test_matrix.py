"""Every endpoint x every role gives the status the RBAC table says; no route is left out of the table."""

from __future__ import annotations

import importlib
import re
import pkgutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import bearer, user_id
from tests.contract.rbac.matrix import ROLES, RbacRow, Request, World


def all_rows() -> list[RbacRow]:
    rows: list[RbacRow] = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("rows_"):
            rows.extend(importlib.import_module(f"tests.contract.rbac.{info.name}").ROWS)
    return rows


ROWS = all_rows()


def test_every_route_is_in_the_table_and_every_row_is_a_route() -> None:
    from server import all_endpoints

    routes = {(e.method, e.path) for e in all_endpoints()}
    listed = [(r.method, r.path) for r in ROWS]
    assert len(listed) == len(set(listed)), "a route is listed twice"
    assert routes - set(listed) == set(), "routes missing from the RBAC table"
    assert set(listed) - routes == set(), "rows that name no route"
    for row in ROWS:
        assert set(row.expect) == set(ROLES), f"{row.method} {row.path} must give every role"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.method} {r.path}")
def test_rbac(row: RbacRow, demo, settings, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    users = {name: user_id(demo, name) for name in ("admin", "driver1", "driver2")}
    headers = {
        "anonymous": {},
        "driver": bearer(settings, users["driver1"]),
        "other_driver": bearer(settings, users["driver2"]),
        "admin": bearer(settings, users["admin"]),
    }
    world = World(demo, settings, client, users, headers)
    failures = []
    for role in ROLES:
        request = row.setup(world) if row.setup else Request()
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", row.path).format(**request.path)
        kwargs = {"headers": headers[role], "params": request.query}
        if request.json is not None:
            kwargs["json"] = request.json
        response = client.request(row.method, path, **kwargs)
        if response.status_code != row.expect[role]:
            failures.append(f"{role}: {response.status_code} != {row.expect[role]} {response.text[:200]}")
    assert not failures, failures
