"""The support console's HTTP side: one public shell page, static files, and HTML fragments for admins.

The shell (`GET /console/`) holds no data: a login form and empty frames. Every fragment under
`/console/f/` answers only to an admin's bearer access token (the API's own tokens and checks,
`domain.api.authenticate`); the browser keeps the tokens in memory and htmx sends the header. Anyone else
gets the API's error body (401 / 403), which the page turns back into the login form. Every answer carries a
Content-Security-Policy that allows scripts, styles and connections from this origin only: no inline script,
no eval, no frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from console import queries
from domain import codec
from domain.api import (
    ADMIN,
    AppState,
    Ctx,
    authenticate,
    database_error_response,
    domain_error_response,
    read_body,
)
from domain.audit.models import AuditEntry
from domain.audit.queries import audit_filter
from domain.clock import utcnow
from domain.errors import DomainError, NotFound, ValidationError
from domain.feed.reader import fetch_current
from domain.feed.services import FEED_ENTITIES
from domain.logistics.schemas import StockAdjustmentCreate
from domain.logistics.services import adjust_stock
from domain.wire import parse
from reconcile.envelope import MAX_CHANGES
from reconcile.replay import decode_queue
from sync.push import replay_open_rejections

log = logging.getLogger("lpg.console")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PREFIX = "/console"
HTMX = "htmx-2.0.11.min.js"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
AUDIT_PAGE = 50
VERIFY_PAGE = 500

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status, headers=SECURITY_HEADERS)


def json_answer(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json", headers=SECURITY_HEADERS)


Handler = Callable[[Ctx], Response]


def admin_view(state: AppState, handler: Handler, raw: bool = False) -> Callable[[Request], Any]:
    """Authenticate an admin, read the body (JSON, or raw bytes for uploads), run the handler in the pool.
    Refusals leave in the API's error shape; a database that does not answer is a 503 with Retry-After."""

    async def view(request: Request) -> Response:
        try:
            user = await run_in_threadpool(authenticate, state, request, ADMIN)
            ctx = Ctx(request, state, user, dict(request.path_params))
            if request.method == "POST":
                body = await read_body(request, state.settings.max_body_bytes)
                ctx.payload = body if raw else (codec.decode(body, codec.JSON) if body.strip() else {})
                if not raw and not isinstance(ctx.payload, dict):
                    raise ValidationError("the body must be an object")
            response: Response = await run_in_threadpool(handler, ctx)
            return response
        except DomainError as exc:
            response = domain_error_response(exc)
        except Exception as exc:
            fault = database_error_response(exc)  # the API's one mapping of database faults to 503
            if fault is None:
                raise
            log.warning("console: the database failed: %s", exc)
            response = fault
        response.headers.update(SECURITY_HEADERS)
        return response

    view.__name__ = getattr(handler, "__name__", "console_view")
    return view


# -- the shell -------------------------------------------------------------------------------------------


async def shell(request: Request) -> Response:
    return render("index.html", htmx=HTMX, prefix=PREFIX)


async def to_shell(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", 308)


# -- devices ---------------------------------------------------------------------------------------------


def _text(ctx: Ctx, name: str, limit: int = 100) -> str:
    value = ctx.request.query_params.get(name, "")
    if len(value) > limit:
        raise ValidationError(f"'{name}' is at most {limit} characters", name)
    return value


def devices_view(ctx: Ctx) -> Response:
    sort = _text(ctx, "sort") or "device_id"
    if sort not in queries.DEVICE_SORTS:
        raise ValidationError(f"cannot sort by '{sort}'", "sort", {"allowed": list(queries.DEVICE_SORTS)})
    descending = _text(ctx, "dir") == "desc"
    search, only = _text(ctx, "q"), _text(ctx, "only")
    now = utcnow()
    rows = ctx.read(lambda s: queries.devices(s, now, sort, descending, search, only))
    return render(
        "devices.html",
        rows=rows,
        sort=sort,
        descending=descending,
        q=search,
        only=only,
        columns=DEVICE_COLUMNS,
        stale_hours=int(queries.STALE_AFTER.total_seconds() // 3600),
        skew_minutes=queries.SKEW_LIMIT_MS // 60000,
    )


DEVICE_COLUMNS = (
    ("device_id", "Device"),
    ("username", "User"),
    ("app_version", "App"),
    ("clock_skew_ms", "Clock skew"),
    ("last_push_at", "Last push"),
    ("last_pull_at", "Last pull"),
    ("lag", "Lag"),
    ("applied", "Applied"),
    ("duplicates", "Duplicates"),
    ("rejected", "Rejected"),
    ("open_rejections", "Open"),
)


def device_view(ctx: Ctx) -> Response:
    device_id = _text(ctx, "id")
    now = utcnow()
    page = ctx.read(lambda s: queries.device_page(s, now, device_id))
    if page is None:
        raise NotFound(f"no device {device_id}", {"device_id": device_id})
    return render("device.html", **page)


# -- the rejection inbox ---------------------------------------------------------------------------------


def inbox_view(ctx: Ctx) -> Response:
    return render("inbox.html", **ctx.read(queries.inbox), outcome=None)


def _selection(ctx: Ctx) -> tuple[str, list[int]]:
    device_id = ctx.payload.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip() or len(device_id) > 100:
        raise ValidationError("choose a device", "device_id")
    raw = ctx.payload.get("ids", [])
    raw = raw if isinstance(raw, list) else [raw]
    try:
        ids = [int(x) for x in raw]
    except (TypeError, ValueError):
        raise ValidationError("'ids' must be rejection ids", "ids") from None
    if not ids:
        raise ValidationError("select at least one rejection", "ids", {"device_id": device_id})
    if len(ids) > MAX_CHANGES:
        raise ValidationError(f"at most {MAX_CHANGES} at once", "ids")
    return device_id, ids


def dry_run_view(ctx: Ctx) -> Response:
    device_id, ids = _selection(ctx)
    before = ctx.read(lambda s: queries.open_by_id(s, ids))
    answer = replay_open_rejections(ctx, device_id, ids, dry_run=True)
    rows = _side_by_side(before, answer)
    return render(
        "dryrun.html",
        device_id=device_id,
        ids=ids,
        rows=rows,
        applying=sum(1 for r in rows if r["result"]["status"] != "rejected"),
        refused=sum(1 for r in rows if r["result"]["status"] == "rejected"),
    )


def apply_view(ctx: Ctx) -> Response:
    device_id, ids = _selection(ctx)
    before = ctx.read(lambda s: queries.open_by_id(s, ids))
    answer = replay_open_rejections(ctx, device_id, ids, dry_run=False)
    outcome = {"device_id": device_id, "rows": _side_by_side(before, answer)}
    return render("inbox.html", **ctx.read(queries.inbox), outcome=outcome)


def _side_by_side(before: dict[int, dict[str, Any]], answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replayed change: what was refused (left) and what the replay says now (right)."""
    by_temp = {view["client_temp_id"]: view for view in before.values()}
    rows = []
    for result in answer["results"]:
        error = result.get("error")
        rows.append(
            {
                "refused": by_temp.get(result["client_temp_id"]),
                "client_temp_id": result["client_temp_id"],
                "result": result,
                "reading": queries.read_error(error) if error else None,
            }
        )
    return rows


# -- replay a queue file ---------------------------------------------------------------------------------


def replay_page(ctx: Ctx) -> Response:
    return render("replay.html", chunk=MAX_CHANGES)


def decode_view(ctx: Ctx) -> Response:
    """The uploaded file's changes as JSON: the page then sends them to `/api/v1/sync/replay` in batches."""
    raw: bytes = ctx.payload
    if not raw.strip():
        raise ValidationError("the file is empty", "file")
    hint = ctx.request.headers.get("content-type", "")
    changes = decode_queue(raw, msgpack_first="msgpack" in hint)
    return json_answer({"count": len(changes), "changes": changes, "batch": MAX_CHANGES})


# -- stock -----------------------------------------------------------------------------------------------


def stock_view(ctx: Ctx) -> Response:
    now = utcnow()
    return render("stock.html", **ctx.read(lambda s: queries.stock_page(s, now)), outcome=None)


HOLDER = {"depot": "depot", "truck": "truck", "site": "customer"}


def adjust_view(ctx: Ctx) -> Response:
    """Record an adjustment through the same service as `POST /api/v1/stock/adjustments/`, then show the page."""
    form = ctx.payload
    place = form.get("place")
    if place not in HOLDER:
        raise ValidationError("choose depot, truck or site", "place")
    data: dict[str, Any] = {"place": place, "equipment": str(form.get("equipment", "")).strip()}
    data["reason"] = str(form.get("reason", "")).strip()
    for name in ("holder", "full_delta", "empty_delta", "on_site_delta"):
        text = str(form.get(name, "")).strip()
        if not text:
            continue
        try:
            number = int(text)
        except ValueError:
            raise ValidationError(f"'{name}' must be a whole number", name) from None
        data[HOLDER[place] if name == "holder" else name] = number
    cmd = parse(StockAdjustmentCreate, data)
    adjustment_id = ctx.run(lambda call: adjust_stock(call, cmd).record.id)
    now = utcnow()
    page = ctx.read(lambda s: queries.stock_page(s, now))
    return render("stock.html", **page, outcome={"id": adjustment_id, "place": place, **data})


# -- audit -----------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("entity_type", "entity_id", "user", "action", "date_from", "date_to")


def audit_view(ctx: Ctx) -> Response:
    given = {name: _text(ctx, name).strip() for name in AUDIT_FILTERS}
    entity_id: int | None = None
    if given["entity_id"]:
        if not given["entity_id"].isdigit() or len(given["entity_id"]) > 18:
            raise ValidationError("'entity_id' must be a number", "entity_id")
        entity_id = int(given["entity_id"])
    page_text = _text(ctx, "page") or "1"
    page = int(page_text) if page_text.isdigit() and 0 < int(page_text) < 1_000_000 else 1
    tz = ctx.settings.timezone

    def read(session: Any) -> dict[str, Any]:
        try:
            stmt = audit_filter(
                session,
                tz,
                entity_type=given["entity_type"] or None,
                entity_id=entity_id,
                user=given["user"] or None,
                action=given["action"] or None,
                date_from=given["date_from"] or None,
                date_to=given["date_to"] or None,
            )
        except ValueError as exc:
            raise ValidationError(str(exc), "date") from None
        entries = session.scalars(stmt.limit(AUDIT_PAGE + 1).offset((page - 1) * AUDIT_PAGE)).all()
        names = queries.usernames(session)
        return {
            "entries": [queries.entry_view(e, names) for e in entries[:AUDIT_PAGE]],
            "more": len(entries) > AUDIT_PAGE,
            **queries.audit_filters(session),
        }

    found = ctx.read(read)
    return render("audit.html", **found, given=given, page=page)


def audit_entry_view(ctx: Ctx) -> Response:
    entry_id = int(ctx.path["id"])

    def read(session: Any) -> dict[str, Any] | None:
        entry = session.get(AuditEntry, entry_id)
        return None if entry is None else queries.entry_view(entry, queries.usernames(session))

    entry = ctx.read(read)
    if entry is None:
        raise NotFound(f"no audit entry {entry_id}", {"id": entry_id})
    return render("audit_entry.html", entry=entry)


def verify_view(ctx: Ctx) -> Response:
    """One step of the chain verification. `{}` starts (reads the head); then the browser sends back the
    cursor it got until the answer carries a verdict."""
    body = ctx.payload
    if not body.get("cursor"):
        cursor = ctx.read(queries.verify_start)
    else:
        raw = body["cursor"]
        try:
            cursor = queries.VerifyCursor(
                int(raw["head_id"]),
                None if raw["head_hash"] is None else str(raw["head_hash"]),
                int(raw["prev_id"]),
                str(raw["prev_hash"]),
                int(raw["checked"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValidationError("a malformed verification cursor", "cursor") from None
    moved, verdict = ctx.read(lambda s: queries.verify_step(s, cursor, VERIFY_PAGE))
    return json_answer(
        {
            "cursor": {
                "head_id": moved.head_id,
                "head_hash": moved.head_hash,
                "prev_id": moved.prev_id,
                "prev_hash": moved.prev_hash,
                "checked": moved.checked,
            },
            "total": moved.head_id,
            "verdict": verdict,
        }
    )


# -- the live feed ---------------------------------------------------------------------------------------


def feed_view(ctx: Ctx) -> Response:
    return render("feed.html", entities=FEED_ENTITIES, since=fetch_current(ctx.db))


def home_view(ctx: Ctx) -> Response:
    """The first fragment after a login: who is logged in (and proof that the token is an admin's)."""
    return render("home.html", username=ctx.actor.username)


FRAGMENTS: tuple[tuple[str, str, Handler, bool], ...] = (
    ("GET", "/f/home", home_view, False),
    ("GET", "/f/devices", devices_view, False),
    ("GET", "/f/device", device_view, False),
    ("GET", "/f/inbox", inbox_view, False),
    ("POST", "/f/inbox/dry-run", dry_run_view, False),
    ("POST", "/f/inbox/apply", apply_view, False),
    ("GET", "/f/replay", replay_page, False),
    ("POST", "/f/replay/decode", decode_view, True),
    ("GET", "/f/stock", stock_view, False),
    ("POST", "/f/stock/adjust", adjust_view, False),
    ("GET", "/f/audit", audit_view, False),
    ("GET", "/f/audit/{id:int}", audit_entry_view, False),
    ("POST", "/f/audit/verify", verify_view, False),
    ("GET", "/f/feed", feed_view, False),
)


def console_routes(state: AppState) -> list[BaseRoute]:
    """The console's routes, mounted by `server.create_app` beside the API's."""
    fragments = [
        Route(path, admin_view(state, handler, raw), methods=[method]) for method, path, handler, raw in FRAGMENTS
    ]
    return [
        Route(PREFIX, to_shell, methods=["GET"]),
        Mount(
            PREFIX,
            routes=[
                Route("/", shell, methods=["GET"]),
                Mount("/static", app=StaticFiles(directory=STATIC), name="console-static"),
                *fragments,
            ],
        ),
    ]
