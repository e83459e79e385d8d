"""HTTP handlers of the catalog context: parse, authorize (domain.accounts.policy), call one service, encode.

Every user reads the catalog; equipment, depots, trucks and services are changed by admins; customers are
created and their contact fields edited by any user, their rates, prices and status by admins only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from domain.api import ADMIN, USER, Ctx, PageQuery, Router, paginate
from domain.catalog import schemas
from domain.catalog import services as svc
from domain.catalog.docs import depot_doc, equipment_doc, service_doc, truck_doc
from domain.catalog.models import Customer, Depot, EquipmentModel, Service, Truck
from domain.errors import NotFound
from domain.ledger import flush_all
from domain.service import Call, Outcome
from domain.wire import parse

router = Router("catalog")

READ_ERRORS = ("validation_error", "not_authenticated", "invalid_token", "token_expired")
WRITE_ERRORS = (*READ_ERRORS, "forbidden", "read_only_field", "conflict", "not_found")
Filter = Annotated[str, Field(min_length=1, max_length=100)]


class ActiveQuery(PageQuery):
    active: bool | None = None


class CodeQuery(ActiveQuery):
    code: Filter | None = None


class TruckQuery(ActiveQuery):
    plate: Filter | None = None


class CustomerQuery(ActiveQuery):
    """`search` matches the name or the address, ignoring case."""

    search: Filter | None = None


def _filtered(model: Any, query: ActiveQuery, **columns: str | None) -> Select[Any]:
    stmt = select(model).order_by(model.id)
    if query.active is not None:
        stmt = stmt.where(model.active == query.active)
    for name, value in columns.items():
        if value is not None:
            stmt = stmt.where(getattr(model, name) == value)
    return stmt


def _get(session: Session, model: Any, entity: str, record_id: int) -> Any:
    found = session.get(model, record_id)
    if found is None:
        raise NotFound(f"{entity} {record_id} not found", {"entity": entity, "id": record_id})
    return found


def _write(ctx: Ctx, service: Callable[[Call], Outcome], view: Callable[[Session, Any], dict[str, Any]]) -> Any:
    """Run one service in its unit of work; answer with the record's representation as committed."""

    def work(call: Call) -> dict[str, Any]:
        outcome = service(call)
        flush_all(call.session)
        return view(call.session, outcome.record)

    return ctx.run(work)


def _reference(
    path: str,
    entity: str,
    model: Any,
    doc: Callable[[Any], dict[str, Any]],
    query: type[ActiveQuery],
    filters: tuple[str, ...],
    create: tuple[type[Any], Callable[[Call, Any], Outcome]],
    update: tuple[type[Any], Callable[[Call, int, Any], Outcome]],
) -> None:
    """List, detail, create and update endpoints of one kind of reference data (admins write)."""
    item = path + "{id:int}/"
    view = lambda session, row: doc(row)  # noqa: E731

    def list_(ctx: Ctx) -> dict[str, Any]:
        stmt = _filtered(model, ctx.query, **{f: getattr(ctx.query, f) for f in filters})
        return ctx.read(lambda s: paginate(ctx, s, stmt, doc, ctx.query))

    def detail(ctx: Ctx) -> dict[str, Any]:
        return ctx.read(lambda s: doc(_get(s, model, entity, ctx.path["id"])))

    def create_(ctx: Ctx) -> dict[str, Any]:
        return _write(ctx, lambda call: create[1](call, ctx.body), view)

    def update_(ctx: Ctx) -> dict[str, Any]:
        return _write(ctx, lambda call: update[1](call, ctx.path["id"], ctx.body), view)

    for fn, verb in ((list_, "list"), (detail, "get"), (create_, "create"), (update_, "update")):
        fn.__name__ = f"{verb}_{entity}"
        fn.__doc__ = {
            "list": f"List {entity} records (filters: active, {', '.join(filters)}).",
            "get": f"One {entity} record.",
            "create": f"Create a {entity} record (admin).",
            "update": f"Change a {entity} record's fields (admin); `active: false` deactivates it.",
        }[verb]
    router.get(path, query=query, auth=USER, errors=READ_ERRORS)(list_)
    router.get(item, auth=USER, errors=(*READ_ERRORS, "not_found"))(detail)
    router.post(path, body=create[0], auth=ADMIN, status=201, errors=WRITE_ERRORS)(create_)
    router.patch(item, body=update[0], auth=ADMIN, errors=(*WRITE_ERRORS, "not_found"))(update_)


_reference(
    "/api/v1/equipment/", "equipment", EquipmentModel, equipment_doc, CodeQuery, ("code",),
    (schemas.EquipmentCreate, svc.create_equipment), (schemas.EquipmentUpdate, svc.update_equipment),
)  # fmt: skip
_reference(
    "/api/v1/depots/", "depot", Depot, depot_doc, CodeQuery, ("code",),
    (schemas.DepotCreate, svc.create_depot), (schemas.DepotUpdate, svc.update_depot),
)  # fmt: skip
_reference(
    "/api/v1/trucks/", "truck", Truck, truck_doc, TruckQuery, ("plate",),
    (schemas.TruckCreate, svc.create_truck), (schemas.TruckUpdate, svc.update_truck),
)  # fmt: skip
_reference(
    "/api/v1/services/", "service", Service, service_doc, CodeQuery, ("code",),
    (schemas.ServiceCreate, svc.create_service), (schemas.ServiceUpdate, svc.update_service),
)  # fmt: skip


# -- customers --------------------------------------------------------------------------------------------


@router.get("/api/v1/customers/", query=CustomerQuery, auth=USER, errors=READ_ERRORS)
def list_customers(ctx: Ctx) -> dict[str, Any]:
    """List customers with their meters and price overrides (filters: active, search)."""
    stmt = _filtered(Customer, ctx.query)
    if ctx.query.search is not None:
        term = ctx.query.search
        stmt = stmt.where(
            or_(Customer.name.icontains(term, autoescape=True), Customer.address.icontains(term, autoescape=True))
        )

    def read(session: Session) -> dict[str, Any]:
        page = paginate(ctx, session, stmt, lambda c: c, ctx.query)
        page["results"] = svc.customer_views(session, page["results"])
        return page

    return ctx.read(read)


@router.get("/api/v1/customers/{id:int}/", auth=USER, errors=(*READ_ERRORS, "not_found"))
def get_customer(ctx: Ctx) -> dict[str, Any]:
    """One customer with meters and price overrides."""
    return ctx.read(lambda s: svc.customer_view(s, _get(s, Customer, "customer", ctx.path["id"])))


@router.post("/api/v1/customers/", body=schemas.CustomerCreate, auth=USER, status=201, errors=WRITE_ERRORS)
def create_customer(ctx: Ctx) -> dict[str, Any]:
    """Create a customer (any user); `meter_rate`, `kg_rate` and `prices` are admin-only."""
    return _write(ctx, lambda call: svc.create_customer(call, ctx.body), svc.customer_view)


@router.patch("/api/v1/customers/{id:int}/", body=schemas.CustomerPatch, auth=USER, errors=(*WRITE_ERRORS, "not_found"))
def update_customer(ctx: Ctx) -> dict[str, Any]:
    """Change a customer: contact fields (any user); rates, `prices` and `active` (admin). Last write wins."""
    cmd = parse(schemas.CustomerUpdate, {**ctx.payload, "id": ctx.path["id"]})
    return _write(ctx, lambda call: svc.update_customer(call, cmd), svc.customer_view)


@router.post(
    "/api/v1/customers/{id:int}/meters/",
    body=schemas.MeterCreate,
    auth=USER,
    status=201,
    errors=(*WRITE_ERRORS, "not_found", "invalid_state"),
)
def add_meter(ctx: Ctx) -> dict[str, Any]:
    """Install a meter at a customer's site (any user); answers with the customer."""
    return _write(ctx, lambda call: svc.add_meter(call, ctx.path["id"], ctx.body), svc.customer_view)


@router.patch(
    "/api/v1/customers/{id:int}/meters/{meter_id:int}/",
    body=schemas.MeterUpdate,
    auth=ADMIN,
    errors=(*WRITE_ERRORS, "not_found"),
)
def update_meter(ctx: Ctx) -> dict[str, Any]:
    """Correct a meter's serial or deactivate it (admin); answers with the customer."""
    return _write(
        ctx, lambda call: svc.update_meter(call, ctx.path["id"], ctx.path["meter_id"], ctx.body), svc.customer_view
    )
