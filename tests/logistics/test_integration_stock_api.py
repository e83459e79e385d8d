"""Stock reads, totals (the conservation figure) and admin adjustments, the only source of new cylinders."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select

from domain.audit.models import AuditEntry
from domain.feed.models import FeedEntry
from domain.logistics.models import StockAdjustment
from tests.logistics.test_integration_distributions import snapshot

ADJUST = "/api/v1/stock/adjustments/"


def totals(client, headers) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {t["equipment"]: t["total"] for t in client.get("/api/v1/stock/totals/", headers=headers).json()["results"]}


def test_stock_list_orders_and_filters(demo, client, driver_headers) -> None:
    page = client.get("/api/v1/stock/", params={"page_size": 500}, headers=driver_headers).json()
    assert page["count"] == 20  # 2 depots x 4 models + 3 trucks x 4 models
    places = [r["place"] for r in page["results"]]
    assert places == ["depot"] * 8 + ["truck"] * 12
    assert page["results"][0] == {
        "id": 1,
        "place": "depot",
        "depot": 1,
        "equipment": "CYL9",
        "full": 200,
        "empty": 40,
        "version": 1,
        "last_modified": page["results"][0]["last_modified"],
    }
    get = lambda **p: client.get("/api/v1/stock/", params=p, headers=driver_headers).json()  # noqa: E731
    assert [(r["truck"], r["equipment"]) for r in get(truck=3)["results"]] == [
        (3, "CYL9"), (3, "CYL12.7"), (3, "CYL14"), (3, "CYL50"),
    ]  # fmt: skip
    assert get(place="truck", equipment="CYL50")["count"] == 3
    assert get(place="depot", equipment=4)["count"] == 2
    assert get(depot=2, equipment="CYL14")["results"][0]["full"] == 200
    assert get(place="truck", depot=1)["count"] == 0
    assert get(place="site")["count"] == 0
    for bad in ({"place": "moon"}, {"depot": "one"}, {"shelf": 1}, {"depot": 0}):
        response = client.get("/api/v1/stock/", params=bad, headers=driver_headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", bad


def test_totals_add_depots_trucks_and_sites(demo, client, driver_headers) -> None:
    body = client.get("/api/v1/stock/totals/", headers=driver_headers).json()
    cyl9 = body["results"][0]
    assert cyl9 == {
        "equipment": "CYL9",
        "depot": {"full": 400, "empty": 80},
        "truck": {"full": 60, "empty": 0},
        "site": {"on_site": 0},
        "total": 540,
    }
    one = client.get("/api/v1/stock/totals/", params={"equipment": "CYL50"}, headers=driver_headers).json()
    assert [t["equipment"] for t in one["results"]] == ["CYL50"]


def test_adjustment_changes_one_row_with_audit_and_feed(demo, client, admin_headers) -> None:
    before = totals(client, admin_headers)
    response = client.post(
        ADJUST,
        json={
            "place": "depot",
            "depot": 2,
            "equipment": "CYL14",
            "full_delta": 12,
            "empty_delta": -40,
            "reason": "delivery from the filling plant",
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["place"], body["depot"], body["equipment"], body["full_delta"], body["empty_delta"]) == (
        "depot", 2, "CYL14", 12, -40,
    )  # fmt: skip
    assert body["user"] == 1 and body["reason"] == "delivery from the filling plant"
    assert (body["stock"]["full"], body["stock"]["empty"], body["stock"]["version"]) == (212, 0, 2)
    after = totals(client, admin_headers)
    assert after["CYL14"] == before["CYL14"] - 28 and after["CYL9"] == before["CYL9"]
    entry = demo.read(lambda s: s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first())
    context = orjson.loads(entry.context)
    assert (entry.action, entry.entity_type, entry.entity_id) == ("adjust", "depot_stock", body["stock"]["id"])
    assert context["before"] == {"full": 200, "empty": 40} and context["reason"] == "delivery from the filling plant"
    assert context["after"]["adjustment"]["id"] == body["id"]
    feed = demo.read(
        lambda s: s.execute(
            select(FeedEntry).where(FeedEntry.entity == "depot_stock", FeedEntry.entity_id == body["stock"]["id"])
        ).scalar_one()
    )
    assert orjson.loads(feed.doc) == body["stock"] and feed.scope == 0
    listed = client.get(ADJUST, headers=admin_headers).json()
    assert listed["count"] == 1 and listed["results"][0] == {k: v for k, v in body.items() if k != "stock"}


def test_a_site_row_is_created_on_first_use_and_may_go_negative(demo, client, admin_headers) -> None:
    response = client.post(
        ADJUST,
        json={"place": "site", "customer": 4, "equipment": "CYL50", "on_site_delta": -2, "reason": "found missing"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["stock"] == {**response.json()["stock"], "place": "site", "customer": 4, "on_site": -2}
    rows = client.get("/api/v1/stock/", params={"customer": 4}, headers=admin_headers).json()["results"]
    assert [(r["equipment"], r["on_site"]) for r in rows] == [("CYL50", -2)]


def test_a_depot_or_truck_may_not_go_below_zero(demo, client, admin_headers) -> None:
    before = snapshot(demo)
    response = client.post(
        ADJUST,
        json={"place": "truck", "truck": 2, "equipment": "CYL9", "full_delta": -21, "reason": "write-off"},
        headers=admin_headers,
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_stock"
    assert error["details"] == {
        "place": "truck", "truck": 2, "equipment": "CYL9", "state": "full", "available": 20, "requested": 21,
    }  # fmt: skip
    assert snapshot(demo) == before
    assert demo.read(lambda s: s.execute(select(func.count()).select_from(StockAdjustment)).scalar_one()) == 0


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"place": "depot", "depot": 1, "equipment": "CYL9", "full_delta": 1}, "validation_error", "reason"),
        (
            {"place": "depot", "depot": 1, "equipment": "CYL9", "full_delta": 1, "reason": "   "},
            "validation_error",
            "reason",
        ),
        ({"place": "depot", "equipment": "CYL9", "full_delta": 1, "reason": "x"}, "validation_error", "depot"),
        (
            {"place": "depot", "depot": 1, "truck": 1, "equipment": "CYL9", "full_delta": 1, "reason": "x"},
            "validation_error",
            "truck",
        ),
        ({"place": "depot", "depot": 1, "equipment": "CYL9", "reason": "x"}, "validation_error", "full_delta"),
        (
            {"place": "depot", "depot": 1, "equipment": "CYL9", "on_site_delta": 1, "reason": "x"},
            "validation_error",
            "on_site_delta",
        ),
        (
            {"place": "site", "customer": 1, "equipment": "CYL9", "full_delta": 1, "reason": "x"},
            "validation_error",
            "full_delta",
        ),
        (
            {"place": "depot", "depot": 1, "equipment": "CYL9", "full_delta": 1.5, "reason": "x"},
            "validation_error",
            "full_delta",
        ),
        ({"place": "depot", "depot": 9, "equipment": "CYL9", "full_delta": 1, "reason": "x"}, "not_found", None),
        ({"place": "depot", "depot": 1, "equipment": "CYL99", "full_delta": 1, "reason": "x"}, "not_found", None),
    ],
)
def test_invalid_adjustments_are_refused(demo, client, admin_headers, body, code, field) -> None:
    response = client.post(ADJUST, json=body, headers=admin_headers)
    error = response.json()["error"]
    assert error["code"] == code, response.text
    if field is not None:
        assert error["details"]["field"] == field
