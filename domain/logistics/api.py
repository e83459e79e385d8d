"""HTTP handlers of the logistics context: parse, authorize (domain.accounts.policy), call one service, encode.

Stock is readable by every user (a driver needs the truck's stock to avoid `insufficient_stock` offline);
adjusting it is admin-only. A driver sees and acts on their own distributions only; another driver's is 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.accounts.policy import ensure_visible, owner_filter
from domain.api import ADMIN, USER, Ctx, PageQuery, Router, paginate
from domain.catalog.lookups import equipment_codes
from domain.errors import NotFound
from domain.logistics import queries
from domain.logistics import services as svc
from domain.logistics.docs import adjustment_doc, distribution_doc, stock_doc
from domain.logistics.models import Distribution
from domain.logistics.schemas import DistributionCreate, DistributionPatch, DistributionUpdate, StockAdjustmentCreate
from domain.service import Call, Outcome
from domain.wire import parse

router = Router("logistics")

READ_ERRORS = ("validation_error", "not_authenticated", "invalid_token", "token_expired")
WRITE_ERRORS = (*READ_ERRORS, "forbidden", "read_only_field", "not_found", "invalid_state")


def _code_or_id(value: Any) -> int | str:
    """Query strings are text: digits name an id, anything else a code (`CYL12.7`)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value  # type: ignore[no-any-return]


QueryId = Annotated[int, Field(gt=0, le=2**63 - 1)]  # query strings are text: "3" is the id 3
EquipmentFilter = Annotated[int | Annotated[str, Field(min_length=1, max_length=40)], BeforeValidator(_code_or_id)]


class StockQuery(PageQuery):
    place: Literal["depot", "truck", "site"] | None = None
    depot: QueryId | None = None
    truck: QueryId | None = None
    customer: QueryId | None = None
    equipment: EquipmentFilter | None = None


class TotalsQuery(PageQuery):
    equipment: EquipmentFilter | None = None


class AdjustmentQuery(PageQuery):
    place: Literal["depot", "truck", "site"] | None = None
    equipment: EquipmentFilter | None = None


class DistributionQuery(PageQuery):
    status: Literal["pending", "confirmed", "cancelled"] | None = None
    depot: QueryId | None = None
    truck: QueryId | None = None
    driver: QueryId | None = None
    date_from: date | None = None
    date_to: date | None = None


# -- stock ------------------------------------------------------------------------------------------------


@router.get("/api/v1/stock/", query=StockQuery, auth=USER, errors=READ_ERRORS)
def list_stock(ctx: Ctx) -> dict[str, Any]:
    """Stock rows of depots, trucks and customer sites (filters: place, depot, truck, customer, equipment)."""
    q: StockQuery = ctx.query
    stmt = queries.stock_statement(queries.StockFilter(q.place, q.depot, q.truck, q.customer, q.equipment))

    def read(session: Session) -> dict[str, Any]:
        count = 0 if stmt is None else session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        offset = (q.page - 1) * q.page_size
        rows = [] if stmt is None else session.execute(stmt.limit(q.page_size).offset(offset)).mappings().all()
        return {
            "count": count,
            "next": ctx.absolute(page=q.page + 1) if offset + len(rows) < count else None,
            "previous": ctx.absolute(page=q.page - 1) if q.page > 1 else None,
            "results": [queries.stock_row_doc(r) for r in rows],
        }

    return ctx.read(read)


@router.get("/api/v1/stock/totals/", query=TotalsQuery, auth=USER, errors=READ_ERRORS)
def stock_totals(ctx: Ctx) -> dict[str, Any]:
    """Per equipment model: depot + truck + site = total (constant but for admin adjustments)."""
    results = ctx.read(lambda s: queries.stock_totals(s, ctx.query.equipment))
    return {"count": len(results), "next": None, "previous": None, "results": results}


@router.post(
    "/api/v1/stock/adjustments/",
    body=StockAdjustmentCreate,
    auth=ADMIN,
    status=201,
    errors=(*WRITE_ERRORS, "insufficient_stock"),
)
def create_adjustment(ctx: Ctx) -> dict[str, Any]:
    """Add or remove cylinders at one place with a reason (admin); a depot or truck may not go below zero."""

    def work(call: Call) -> dict[str, Any]:
        outcome = svc.adjust_stock(call, ctx.body)
        call.session.flush()
        code = equipment_codes(call.session)[outcome.record.equipment_id]
        return {**adjustment_doc(outcome.record, code), "stock": stock_doc(outcome.related["stock"], code)}

    return ctx.run(work)


@router.get("/api/v1/stock/adjustments/", query=AdjustmentQuery, auth=ADMIN, errors=(*READ_ERRORS, "forbidden"))
def list_adjustments(ctx: Ctx) -> dict[str, Any]:
    """The stock adjustments, oldest first (admin; filters: place, equipment)."""
    stmt = queries.adjustment_statement(ctx.query.place, ctx.query.equipment)

    def read(session: Session) -> dict[str, Any]:
        codes = equipment_codes(session)
        return paginate(ctx, session, stmt, lambda a: adjustment_doc(a, codes[a.equipment_id]), ctx.query)

    return ctx.read(read)


# -- distributions ----------------------------------------------------------------------------------------


def _view(session: Session, d: Distribution) -> dict[str, Any]:
    return distribution_doc(d, equipment_codes(session))


def _write(ctx: Ctx, service: Callable[[Call], Outcome]) -> dict[str, Any]:
    def work(call: Call) -> dict[str, Any]:
        outcome = service(call)
        call.session.flush()
        return _view(call.session, outcome.record)

    return ctx.run(work)


@router.get("/api/v1/distributions/", query=DistributionQuery, auth=USER, errors=READ_ERRORS)
def list_distributions(ctx: Ctx) -> dict[str, Any]:
    """Distributions by id (a driver's own only; filters: status, depot, truck, driver, date_from, date_to)."""
    q: DistributionQuery = ctx.query
    f = queries.DistributionFilter(
        owner_filter(ctx.actor), q.status, q.depot, q.truck, q.driver, q.date_from, q.date_to
    )
    stmt = queries.distribution_statement(f, ctx.settings.timezone)

    def read(session: Session) -> dict[str, Any]:
        codes = equipment_codes(session)
        return paginate(ctx, session, stmt, lambda d: distribution_doc(d, codes), q)

    return ctx.read(read)


@router.get("/api/v1/distributions/{id:int}/", auth=USER, errors=(*READ_ERRORS, "not_found"))
def get_distribution(ctx: Ctx) -> dict[str, Any]:
    """One distribution with its items (a driver's own only)."""

    def read(session: Session) -> dict[str, Any]:
        d = session.get(Distribution, ctx.path["id"])
        if d is None:
            raise NotFound(f"distribution {ctx.path['id']} not found", {"entity": "distribution", "id": ctx.path["id"]})
        ensure_visible(ctx.actor, d.driver_id, "distribution", d.id)
        return _view(session, d)

    return ctx.read(read)


@router.post(
    "/api/v1/distributions/",
    body=DistributionCreate,
    auth=USER,
    status=201,
    errors=(*WRITE_ERRORS, "insufficient_stock"),
)
def create_distribution(ctx: Ctx) -> dict[str, Any]:
    """Create a pending distribution (or, with `confirm: true`, create and confirm it in one transaction)."""
    return _write(ctx, lambda call: svc.create_distribution(call, ctx.body))


@router.patch("/api/v1/distributions/{id:int}/", body=DistributionPatch, auth=USER, errors=WRITE_ERRORS)
def update_distribution(ctx: Ctx) -> dict[str, Any]:
    """Change a pending distribution's items (replacing them), depot or truck; confirmed is immutable."""
    cmd = parse(DistributionUpdate, {**ctx.payload, "id": ctx.path["id"]})
    return _write(ctx, lambda call: svc.update_distribution(call, cmd))


@router.post(
    "/api/v1/distributions/{id:int}/confirm/",
    auth=USER,
    body_optional=True,
    errors=(*WRITE_ERRORS, "insufficient_stock"),
)
def confirm_distribution(ctx: Ctx) -> dict[str, Any]:
    """Move the cylinders and number the distribution (DIST-YYYY-NNNNNN), all or nothing."""
    return _write(ctx, lambda call: svc.confirm_distribution(call, ctx.path["id"]))


@router.post("/api/v1/distributions/{id:int}/cancel/", auth=USER, body_optional=True, errors=WRITE_ERRORS)
def cancel_distribution(ctx: Ctx) -> dict[str, Any]:
    """Cancel a pending distribution; nothing moves."""
    return _write(ctx, lambda call: svc.cancel_distribution(call, ctx.path["id"]))
