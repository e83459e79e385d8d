"""Report filters (query strings) and the shapes the reports answer with; the OpenAPI document reads both."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from domain.wire import Query

# Far enough apart for any business question, near enough that a date never overflows a time zone shift.
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)
Format = Literal["json", "csv"]


class ReportQuery(Query):
    """`?format=csv` answers the rows as CSV (header line first) instead of JSON."""

    format: Format = "json"


class SalesQuery(ReportQuery):
    """Confirmed transactions grouped by business day (Singapore), driver or customer; dates inclusive."""

    group_by: Literal["day", "driver", "customer"] = "day"
    date_from: date | None = Field(
        None, ge=EARLIEST, le=LATEST, description="first business day, inclusive (2000-01-01 to 2100-12-31)"
    )
    date_to: date | None = Field(
        None, ge=EARLIEST, le=LATEST, description="last business day, inclusive (2000-01-01 to 2100-12-31)"
    )

    @field_validator("date_to")
    @classmethod
    def _not_before_from(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("date_from")
        if value is not None and start is not None and value < start:
            raise ValueError("date_to is before date_from")
        return value


class OutstandingQuery(ReportQuery):
    customer: int | None = Field(None, ge=1, le=2**63 - 1, description="only this customer's invoices")
    driver: int | None = Field(None, ge=1, le=2**63 - 1, description="only invoices of this driver's sales")


Money = str  # a decimal string with 2 places: "25.50"


class StockRow(BaseModel):
    """One stock row, or (place `total`) the conservation total of one model over every place."""

    place: Literal["depot", "truck", "site", "total"]
    holder_id: int | None
    holder: str
    equipment: str
    full: int | None
    empty: int | None
    on_site: int | None
    total: int


class StockReport(BaseModel):
    report: Literal["stock"]
    generated_at: str
    columns: list[str]
    rows: list[StockRow]
    totals: dict[str, int] = Field(description="per equipment code: cylinders over all depots, trucks and sites")


class SalesRow(BaseModel):
    key: str = Field(description="the business day (YYYY-MM-DD), or the driver's or customer's id")
    name: str
    transactions: int
    usage: str
    full_delivered: int
    empty_returned: int
    half_returned: int
    subtotal: Money
    gst: Money
    total: Money


class SalesReport(BaseModel):
    report: Literal["sales"]
    generated_at: str
    group_by: Literal["day", "driver", "customer"]
    date_from: str | None
    date_to: str | None
    columns: list[str]
    rows: list[SalesRow]
    totals: SalesRow


class OutstandingRow(BaseModel):
    id: int
    number: str
    issued_at: str
    status: str
    customer_id: int
    customer_name: str
    driver_id: int
    total: Money
    amount_paid: Money
    balance: Money
    age_days: int


class OutstandingReport(BaseModel):
    report: Literal["outstanding_invoices"]
    generated_at: str
    columns: list[str]
    rows: list[OutstandingRow]
    totals: dict[str, str | int]


class SyncRow(BaseModel):
    device_id: str
    user_id: int
    username: str
    first_seen: str
    last_push_at: str | None
    last_pull_at: str | None
    last_pulled_seq: int | None
    lag: int = Field(description="the current feed seq minus the device's last pulled seq")
    applied: int
    duplicates: int
    rejected: int
    open_rejections: int
    app_version: str | None
    clock_skew_ms: int | None


class SyncReport(BaseModel):
    report: Literal["sync"]
    generated_at: str
    current_seq: int
    columns: list[str]
    rows: list[SyncRow]
    totals: dict[str, int]
