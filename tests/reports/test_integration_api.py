"""Admin reports: the numbers are right, drafts and cancelled sales never count, and the CSV form of each
report parses with the csv module into exactly its JSON rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from domain.accounts.models import Device
from domain.db import Database
from domain.invoicing.models import Invoice
from domain.logistics.models import SiteStock, TruckStock
from domain.sales.models import DeliveryLine, Transaction
from reconcile.models import RejectedChange

REPORTS = ["stock", "sales", "outstanding-invoices", "sync"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sale(
    driver: int, customer: int, occurred: str, status: str, subtotal: str, gst: str, usage: str = "0"
) -> Transaction:
    total = Decimal(subtotal) + Decimal(gst)
    return Transaction(
        customer_id=customer,
        truck_id=1,
        driver_id=driver,
        status=status,
        occurred_at=at(occurred),
        usage=Decimal(usage),
        subtotal=Decimal(subtotal),
        gst=Decimal(gst),
        total=total,
    )


@pytest.fixture
def business(demo: Database) -> Database:
    """Two confirmed sales across midnight in Singapore, a draft and a cancelled one; one invoice unpaid,
    one paid; three CYL9 moved from truck 1 to customer 1; a device with rejections."""

    def work(uow: Any) -> None:
        s = uow.session
        t1 = sale(2, 1, "2026-03-01T15:30:00", "confirmed", "100.00", "9.00", "10.50")  # 23:30 SGT, 1 March
        t2 = sale(3, 2, "2026-03-01T16:30:00", "confirmed", "50.00", "4.50")  # 00:30 SGT, 2 March
        t3 = sale(2, 1, "2026-03-01T10:00:00", "draft", "999.00", "89.91")
        t4 = sale(2, 2, "2026-03-01T11:00:00", "cancelled", "999.00", "89.91")
        t1.deliveries = [
            DeliveryLine(equipment_id=1, kind="full_deliver", qty=3),
            DeliveryLine(equipment_id=2, kind="full_deliver", qty=2),
            DeliveryLine(equipment_id=1, kind="empty_return", qty=1),
        ]
        t2.deliveries = [DeliveryLine(equipment_id=1, kind="half_return", qty=2)]
        t3.deliveries = [DeliveryLine(equipment_id=1, kind="full_deliver", qty=50)]
        s.add_all([t1, t2, t3, t4])
        s.flush()
        for trx, number, paid, when in (
            (t1, "INV-2026-000001", "0.00", "2026-03-01T15:31:00"),
            (t2, "INV-2026-000002", "54.50", "2026-03-01T16:31:00"),
        ):
            s.add(
                Invoice(
                    number=number,
                    transaction_id=trx.id,
                    customer_id=trx.customer_id,
                    driver_id=trx.driver_id,
                    status="paid" if paid != "0.00" else "generated",
                    issued_at=at(when),
                    customer_name=f"customer {trx.customer_id}",
                    subtotal=trx.subtotal,
                    gst_rate=Decimal("0.09"),
                    gst=trx.gst,
                    total=trx.total,
                    amount_paid=Decimal(paid),
                )
            )
        truck = s.scalars(select(TruckStock).where(TruckStock.truck_id == 1, TruckStock.equipment_id == 1)).one()
        truck.full -= 3
        s.add(SiteStock(customer_id=1, equipment_id=1, on_site=3))
        s.add(
            Device(
                device_id="tab-017", user_id=2, last_pulled_seq=0, applied_count=7, duplicate_count=1, rejected_count=3
            )
        )
        for resolved in (None, None, at("2026-03-02T00:00:00")):
            s.add(
                RejectedChange(
                    device_id="tab-017",
                    client_temp_id="t",
                    op="transaction.create",
                    payload="{}",
                    error_code="insufficient_stock",
                    error="{}",
                    user_id=2,
                    resolved_at=resolved,
                )
            )

    demo.run(work)
    return demo


def get(client: TestClient, headers: dict[str, str], name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/reports/{name}/", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_stock_report_rows_and_the_conservation_total(
    business: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    report = get(client, admin_headers, "stock")
    rows = report["rows"]
    places = [r for r in rows if r["place"] != "total"]
    assert (
        len([r for r in places if r["place"] == "depot"]) == 8
        and len([r for r in places if r["place"] == "truck"]) == 12
    )
    assert {
        "place": "site",
        "holder_id": 1,
        "holder": "Ah Seng Eating House",
        "equipment": "CYL9",
        "full": None,
        "empty": None,
        "on_site": 3,
        "total": 3,
    } in rows
    truck = next(r for r in places if r["place"] == "truck" and r["holder_id"] == 1 and r["equipment"] == "CYL9")
    assert (truck["full"], truck["empty"], truck["holder"]) == (17, 0, "GBA1234X")
    # 2 depots x (200 full + 40 empty) + 3 trucks x 20 full, whatever moved between places
    assert report["totals"] == {"CYL9": 540, "CYL12.7": 540, "CYL14": 540, "CYL50": 540}
    for code, total in report["totals"].items():
        assert sum(r["total"] for r in places if r["equipment"] == code) == total
        assert {"place": "total", "equipment": code, "total": total}.items() <= next(
            r for r in rows if r["place"] == "total" and r["equipment"] == code
        ).items()


def test_sales_by_day_in_singapore_driver_and_customer(
    business: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    by_day = get(client, admin_headers, "sales", group_by="day")
    assert [(r["key"], r["transactions"], r["subtotal"], r["gst"], r["total"]) for r in by_day["rows"]] == [
        ("2026-03-01", 1, "100.00", "9.00", "109.00"),
        ("2026-03-02", 1, "50.00", "4.50", "54.50"),
    ]
    first = by_day["rows"][0]
    assert (first["full_delivered"], first["empty_returned"], first["half_returned"], first["usage"]) == (
        5,
        1,
        0,
        "10.50",
    )
    assert by_day["totals"] | {} == {
        "key": "total",
        "name": "all",
        "transactions": 2,
        "usage": "10.50",
        "full_delivered": 5,
        "empty_returned": 1,
        "half_returned": 2,
        "subtotal": "150.00",
        "gst": "13.50",
        "total": "163.50",
    }
    by_driver = get(client, admin_headers, "sales", group_by="driver")
    assert [(r["key"], r["name"], r["total"]) for r in by_driver["rows"]] == [
        ("2", "driver1", "109.00"),
        ("3", "driver2", "54.50"),
    ]
    by_customer = get(client, admin_headers, "sales", group_by="customer", date_from="2026-03-02", date_to="2026-03-02")
    assert [(r["key"], r["name"], r["half_returned"]) for r in by_customer["rows"]] == [("2", "Hock Lee Kopitiam", 2)]
    assert get(client, admin_headers, "sales", date_to="2026-02-28")["rows"] == []


def test_sales_filters_are_validated(business: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    for params in (
        {"group_by": "week"},
        {"date_from": "yesterday"},
        {"date_from": "2026-03-02", "date_to": "2026-03-01"},
        {"colour": "red"},
        {"date_from": "1066-10-14"},
    ):
        response = client.get("/api/v1/reports/sales/", headers=admin_headers, params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "validation_error"


def test_outstanding_invoices(business: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    report = get(client, admin_headers, "outstanding-invoices")
    assert [(r["number"], r["balance"], r["amount_paid"], r["status"]) for r in report["rows"]] == [
        ("INV-2026-000001", "109.00", "0.00", "generated")
    ]
    assert report["rows"][0]["age_days"] >= 0
    assert report["totals"] == {"invoices": 1, "balance": "109.00"}
    assert get(client, admin_headers, "outstanding-invoices", driver=3)["rows"] == []
    assert len(get(client, admin_headers, "outstanding-invoices", customer=1)["rows"]) == 1


def test_sync_report(business: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    report = get(client, admin_headers, "sync")
    [row] = report["rows"]
    assert report["current_seq"] > 0, "the demo data is in the feed"
    assert row["device_id"] == "tab-017" and row["username"] == "driver1"
    assert row["lag"] == report["current_seq"]
    assert (row["applied"], row["duplicates"], row["rejected"], row["open_rejections"]) == (7, 1, 3, 2)
    assert report["totals"] == {"devices": 1, "rejected": 3, "open_rejections": 2, "max_lag": report["current_seq"]}


@pytest.mark.parametrize("name", REPORTS)
def test_csv_parses_and_matches_json(
    name: str, business: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    as_json = get(client, admin_headers, name)
    response = client.get(f"/api/v1/reports/{name}/", headers=admin_headers, params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == as_json["columns"]
    parsed = list(reader)
    assert parsed, "every report has rows in this fixture"
    assert parsed == [{k: "" if v is None else str(v) for k, v in row.items()} for row in as_json["rows"]]


@pytest.mark.parametrize("name", REPORTS)
def test_reports_are_admin_only(name: str, client: TestClient, driver_headers: dict[str, str]) -> None:
    assert client.get(f"/api/v1/reports/{name}/", headers=driver_headers).status_code == 403
    assert client.get(f"/api/v1/reports/{name}/").status_code == 401
