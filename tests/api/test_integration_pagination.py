"""Lists: following `next` from the first page visits every one of 1,234 rows exactly once, and `previous`
walks back the same pages. Uses `GET /api/v1/customers/` once it exists; until then a probe list over the
customers table built with the same `paginate` helper."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from domain.api import Ctx, PageQuery, Router, paginate
from domain.catalog.models import Customer
from domain.db import Database
from domain.settings import Settings
from server import all_endpoints, create_app
from tests.conftest import bearer

ROWS = 1234
REAL_LIST = "/api/v1/customers/"


class CustomerPage(PageQuery):
    active: bool | None = None


probe = Router("probe")


@probe.get("/api/v1/probe-customers/", query=CustomerPage)
def probe_customers(ctx: Ctx) -> dict[str, Any]:
    q: CustomerPage = ctx.query
    stmt = select(Customer).order_by(Customer.name, Customer.id)
    if q.active is not None:
        stmt = stmt.where(Customer.active == q.active)
    return ctx.read(lambda s: paginate(ctx, s, stmt, lambda c: {"id": c.id, "name": c.name}, q))


@pytest.fixture
def many_customers(demo: Database) -> Database:
    def work(uow: Any) -> None:
        have = uow.session.execute(select(func.count()).select_from(Customer)).scalar_one()
        rows = [{"name": f"Customer {n:05d}", "address": "", "meter_rate": 3} for n in range(ROWS - have)]
        uow.session.execute(insert(Customer), rows)

    demo.run(work)
    return demo


@pytest.fixture
def list_client(settings: Settings, many_customers: Database, monkeypatch: Any) -> tuple[TestClient, str]:
    import server

    if any(e.path == REAL_LIST and e.method == "GET" for e in all_endpoints()):
        return TestClient(create_app(settings, many_customers), base_url="http://127.0.0.1"), REAL_LIST
    original = server.routers
    monkeypatch.setattr(server, "routers", lambda: [*original(), probe])
    return TestClient(create_app(settings, many_customers), base_url="http://127.0.0.1"), "/api/v1/probe-customers/"


def test_next_links_walk_every_row_exactly_once(
    list_client: tuple[TestClient, str], admin_headers: dict[str, str]
) -> None:
    client, path = list_client
    url: str | None = f"http://127.0.0.1{path}?page_size=100"
    seen: list[int] = []
    pages: list[str] = []
    while url is not None:
        assert url.startswith("http://127.0.0.1/"), "links are absolute"
        response = client.get(url, headers=admin_headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"count", "next", "previous", "results"} and page["count"] == ROWS
        assert parse_qs(urlsplit(url).query)["page_size"] == ["100"], "the page size is kept in links"
        seen += [row["id"] for row in page["results"]]
        pages.append(url)
        url = page["next"]
    assert len(seen) == ROWS and len(set(seen)) == ROWS
    assert len(pages) == 13
    back: str | None = client.get(pages[-1], headers=admin_headers).json()["previous"]
    walked_back = []
    while back is not None:
        walked_back.append(back)
        back = client.get(back, headers=admin_headers).json()["previous"]
    assert [parse_qs(urlsplit(u).query)["page"][0] for u in walked_back] == [str(n) for n in range(12, 0, -1)]


def test_filters_are_kept_in_links_and_unknown_names_or_values_are_refused(
    list_client: tuple[TestClient, str], admin_headers: dict[str, str]
) -> None:
    client, path = list_client
    if path == "/api/v1/probe-customers/":
        page = client.get(path, params={"active": "true", "page_size": 500}, headers=admin_headers).json()
        assert page["count"] == ROWS and len(page["results"]) == 500
        assert parse_qs(urlsplit(page["next"]).query) == {"active": ["true"], "page_size": ["500"], "page": ["2"]}
    for params in ({"page_size": 501}, {"page_size": 0}, {"page": 0}, {"page": "two"}, {"colour": "red"}):
        response = client.get(path, params=params, headers=admin_headers)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "validation_error"


def test_paginate_refuses_an_unordered_statement(settings: Settings, demo: Database, monkeypatch: Any) -> None:
    import server

    bad = Router("bad")

    @bad.get("/api/v1/unordered/", query=PageQuery)
    def unordered(ctx: Ctx) -> dict[str, Any]:
        return ctx.read(lambda s: paginate(ctx, s, select(Customer), lambda c: {"id": c.id}, ctx.query))

    original = server.routers
    monkeypatch.setattr(server, "routers", lambda: [*original(), bad])
    with TestClient(create_app(settings, demo), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/unordered/", headers=bearer(settings, 1))
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
