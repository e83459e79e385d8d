"""Admin reports over HTTP: JSON by default, `?format=csv` for spreadsheets (the same rows, header first)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from domain.api import ADMIN, Ctx, Router
from domain.clock import utcnow
from domain.reports import queries
from domain.reports.schemas import (
    OutstandingQuery,
    OutstandingReport,
    ReportQuery,
    SalesQuery,
    SalesReport,
    StockReport,
    SyncReport,
)

router = Router("reports")
CSV = "text/csv"


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """One header line, then one line a row; a missing value is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue()


def answer(ctx: Ctx, build: Callable[[Session], dict[str, Any]]) -> Any:
    report = ctx.read(build)
    if ctx.query.format == "csv":
        name = f"{report['report']}-{report['generated_at'][:10]}.csv"
        return Response(
            to_csv(report["columns"], report["rows"]),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return report


OPTIONS: dict[str, Any] = {"auth": ADMIN, "extra_content": (CSV,)}


@router.get("/api/v1/reports/stock/", query=ReportQuery, response=StockReport, **OPTIONS)
def stock_report(ctx: Ctx) -> Any:
    """Stock per place and model, with each model's conservation total over all places."""
    return answer(ctx, lambda s: queries.stock_report(s, utcnow()))


@router.get("/api/v1/reports/sales/", query=SalesQuery, response=SalesReport, **OPTIONS)
def sales_report(ctx: Ctx) -> Any:
    """Confirmed sales (quantities, amounts, GST) by business day, driver or customer."""
    q: SalesQuery = ctx.query
    tz = ctx.settings.timezone
    return answer(ctx, lambda s: queries.sales_report(s, utcnow(), tz, q.group_by, q.date_from, q.date_to))


@router.get("/api/v1/reports/outstanding-invoices/", query=OutstandingQuery, response=OutstandingReport, **OPTIONS)
def outstanding_invoices_report(ctx: Ctx) -> Any:
    """Invoices not fully paid, oldest first, with balance and age in days."""
    q: OutstandingQuery = ctx.query
    tz = ctx.settings.timezone
    return answer(ctx, lambda s: queries.outstanding_report(s, utcnow(), tz, q.customer, q.driver))


@router.get("/api/v1/reports/sync/", query=ReportQuery, response=SyncReport, **OPTIONS)
def sync_report(ctx: Ctx) -> Any:
    """Devices: last push and pull, lag behind the feed, applied / duplicate / rejected / open rejections."""
    return answer(ctx, lambda s: queries.sync_report(s, utcnow()))
