"""Every endpoint x every role gives the status the RBAC table says; no route is left out of the table."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from domain.api import ADMIN, PUBLIC, SELF_AUTH
from domain.models import Base
from tests.conftest import bearer, user_id
from tests.rbac.matrix import ROLES, RbacRow, Request, World, code_of, fill_path, status_of


def all_rows() -> list[RbacRow]:
    rows: list[RbacRow] = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("rows_"):
            rows.extend(importlib.import_module(f"tests.rbac.{info.name}").ROWS)
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
        assert set(row.expect) == set(ROLES), f"{row.id} must give every role"


def test_rows_agree_with_the_declared_auth() -> None:
    """The table cannot contradict the endpoint's own declaration: a public endpoint never asks anyone to
    log in; any other refuses the anonymous with 401; an admin endpoint refuses both drivers with 403."""
    from server import all_endpoints

    declared = {(e.method, e.path): e.auth for e in all_endpoints()}
    wrong = []
    for row in ROWS:
        auth = declared.get((row.method, row.path))
        statuses = {role: status_of(row.expect[role]) for role in ROLES}
        if auth == PUBLIC and statuses["anonymous"] == 401:
            wrong.append(f"{row.id}: public, but anonymous expects 401")
        if auth not in (None, PUBLIC, SELF_AUTH) and statuses["anonymous"] != 401:
            wrong.append(f"{row.id}: needs a login, so anonymous must be 401")
        if auth == SELF_AUTH and statuses["anonymous"] != 401:
            wrong.append(f"{row.id}: needs a login, so anonymous must be 401")
        if auth == ADMIN and (statuses["driver"], statuses["other_driver"]) != (403, 403):
            wrong.append(f"{row.id}: admin only, so both drivers must be 403")
    assert not wrong, wrong


def test_fill_path_drops_converters() -> None:
    assert fill_path("/api/v1/users/{id:int}/", {"id": 7}) == "/api/v1/users/7/"
    assert fill_path("/api/v1/x/{a}/{b:path}", {"a": 1, "b": "c/d"}) == "/api/v1/x/1/c/d"
    with pytest.raises(KeyError):
        fill_path("/api/v1/users/{id:int}/", {})


def fingerprint(db: Any) -> dict[str, int]:
    """What a refused request must not change: the audit and feed counters and every table's row count."""

    def read(session: Any) -> dict[str, int]:
        counts = {
            f"counter:{name}": int(value)
            for name, value in session.execute(text("SELECT name, value FROM counters")).all()
        }
        for table in Base.metadata.sorted_tables:
            counts[table.name] = int(session.execute(select(func.count()).select_from(table)).scalar_one())
        return counts

    return db.read(read)  # type: ignore[no-any-return]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
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
        path = fill_path(row.path, request.path)
        kwargs: dict[str, Any] = {"headers": headers[role], "params": request.query}
        if request.json is not None:
            kwargs["json"] = request.json
        expected = row.expect[role]
        refused = 400 <= status_of(expected) < 500
        before = fingerprint(demo) if refused and not row.refusal_writes else None
        response = client.request(row.method, path, **kwargs)
        if response.status_code != status_of(expected):
            failures.append(f"{role}: {response.status_code} != {status_of(expected)} {response.text[:200]}")
            continue
        if response.status_code >= 400 and row.path.startswith("/couchdb/"):
            body = response.json()  # the CouchDB surface answers in CouchDB's own shape (sync spec)
            if set(body) != {"error", "reason"}:
                failures.append(f"{role}: not CouchDB's error shape: {response.text[:200]}")
        elif response.status_code >= 400:
            body = response.json()
            if set(body) != {"error"} or set(body["error"]) != {"code", "message", "details"}:
                failures.append(f"{role}: not the error shape: {response.text[:200]}")
            elif code_of(expected) is not None and body["error"]["code"] != code_of(expected):
                failures.append(f"{role}: code {body['error']['code']} != {code_of(expected)}")
        if before is not None and fingerprint(demo) != before:
            failures.append(f"{role}: the refused request changed the database")
    assert not failures, failures


def test_the_fingerprint_sees_a_write(demo, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    """The "refusals write nothing" check can fail: a request that writes changes the fingerprint."""
    before = fingerprint(demo)
    assert fingerprint(demo) == before
    client.post("/api/v1/auth/login/", json={"username": "nobody", "password": "no-such-password"})
    after = fingerprint(demo)
    assert after["login_attempts"] == before["login_attempts"] + 1
    assert after["counter:audit"] == before["counter:audit"] + 1
