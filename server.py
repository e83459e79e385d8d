"""Composition root: settings -> database -> Starlette app. `python server.py` migrates, loads demo data
once, and serves with uvicorn. Nothing touches the database at import time."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response

from domain.api import (
    ADMIN,
    PUBLIC,
    AppState,
    Ctx,
    Endpoint,
    Router,
    http_exception_handler,
    routes_for,
    server_error_handler,
)
from domain.db import Database
from domain.dbfaults import RETRY_AFTER_UNAVAILABLE
from domain.errors import ServiceUnavailable
from domain.metrics import observe_pool
from domain.schema import current_revision, upgrade
from domain.settings import Settings
from sync.edge import configure_logging, edge_middleware
from sync.metrics import RouteMetricsMiddleware
from sync.openapi import schema_router, swagger_ui_routes

log = logging.getLogger("lpg.server")

system = Router("system")


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["sqlite", "mysql"]
    schema_revision: str = Field(alias="schema", description="the database's Alembic revision")


@system.get("/api/v1/health", auth=PUBLIC, errors=("service_unavailable",), response=Health)
def health(ctx: Ctx) -> dict[str, Any]:
    """Liveness and readiness: the database answers and its schema revision."""

    def probe() -> str | None:
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # current_revision takes any error for "no schema yet"
            return current_revision(conn)

    try:
        # Two attempts: a pooled connection that died since its last use is dropped and a fresh one tried.
        revision = ctx.db.retrying(probe, idempotent=True, attempts=2)
    except Exception as exc:
        details = {"reason": type(exc).__name__, "retry_after": RETRY_AFTER_UNAVAILABLE}
        raise ServiceUnavailable("the database does not answer", details) from exc
    return {"status": "ok", "database": ctx.db.dialect, "schema": revision}


@system.get(
    "/metrics",
    auth=ADMIN,
    extra_content=("text/plain", "application/openmetrics-text"),
    summary="Prometheus metrics",
)
def metrics_view(ctx: Ctx) -> Response:
    """Metrics in the Prometheus text format (admins; or without a token on LPG_METRICS_ADDR): request
    latency per route, pushed changes, batch sizes, retried units, pool use, e-mails, and, read from the
    database at scrape time, the feed's head seq, device lag and the outbox's depth and age."""
    from sync.metrics import CONTENT_TYPE, exposition

    return Response(exposition(ctx.db), media_type=CONTENT_TYPE)


def routers() -> list[Router]:
    """Every context's endpoints, in the order they are documented."""
    from domain.accounts.api import router as accounts
    from domain.audit.api import router as audit
    from domain.catalog.api import router as catalog
    from domain.invoicing.api import router as invoicing
    from domain.invoicing.outbox_api import router as outbox
    from domain.invoicing.outputs.api import router as invoice_outputs
    from domain.logistics.api import router as logistics
    from domain.reports.api import router as reports
    from domain.sales.api import router as sales
    from sync.changes import router as pull
    from sync.couch import router as couchdb
    from sync.push import router as push

    return [
        system, accounts, catalog, logistics, sales, invoicing, invoice_outputs, outbox, audit, push, pull, couchdb,
        reports, docs,
    ]  # fmt: skip


def all_endpoints() -> list[Endpoint]:
    return [endpoint for router in routers() for endpoint in router.endpoints]


SYNC_PREFIX = "/api/v1/sync/"


def serving_order(endpoints: list[Endpoint]) -> list[Endpoint]:
    """The sync endpoints first, the rest in their order. Starlette tries a request's path against each
    route in turn, and a fleet's pushes and pulls are most of the traffic: a push was tried against 62 path
    patterns before its own. No other route matches a path under /api/v1/sync/ (every earlier route starts
    with another fixed segment), so the order changes no request's route
    (tests/api/test_integration_routing.py checks every path)."""
    return sorted(endpoints, key=lambda endpoint: not endpoint.path.startswith(SYNC_PREFIX))


docs = schema_router(all_endpoints)  # GET /api/schema/: the OpenAPI document of every endpoint above


def create_app(settings: Settings | None = None, db: Database | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    db = db or Database(settings)
    state = AppState(settings, db)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        """The process's background work: the invoice e-mail sender (LPG_AUTO_EMAIL), stopped on shutdown."""
        from domain.invoicing.outbox import Sender

        sender = Sender(db, settings) if settings.auto_email else None
        if sender is not None:
            sender.start()
        try:
            yield
        finally:
            if sender is not None:
                sender.stop()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # its live gauges (pool in use) stop counting

    from console.web import console_routes

    app = Starlette(
        routes=routes_for(serving_order(all_endpoints()), state) + swagger_ui_routes() + console_routes(state),
        exception_handlers={HTTPException: http_exception_handler, Exception: server_error_handler},
        middleware=[*edge_middleware(settings.cors_origins), Middleware(RouteMetricsMiddleware)],
        lifespan=lifespan,
    )
    observe_pool(db.engine)
    app.state.lpg = state
    return app


def create_app_from_env() -> Starlette:
    """The factory uvicorn workers call: settings come from the environment the parent prepared."""
    configure_logging()
    app = create_app(Settings.from_env())
    tune_gc()
    return app


def tune_gc() -> None:
    """The worker's long-lived objects (mappers, schemas, routes, compiled statements) are moved out of the
    cyclic collector's sight, and young collections run less often. A 500-change batch allocates many
    short-lived objects; with the defaults, full collections walking everything the process holds took
    about a third of a batch of new customers' time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def prepare(settings: Settings, demo: bool) -> None:
    """Migrate the database to head and, on a first run, load the demo data."""
    db = Database(settings)
    try:
        upgrade(db.engine)
        if demo:
            from domain.demo import load_demo

            if load_demo(db):
                log.warning("demo data loaded: log in as admin / admin-lpg-2026 (see README)")
    finally:
        db.dispose()


def prepare_metrics(settings: Settings) -> None:
    """Several workers count into files in PROMETHEUS_MULTIPROC_DIR (a fresh temporary one unless given;
    emptied at start, as prometheus-client requires), and LPG_METRICS_ADDR serves /metrics without a token
    from this process, whichever worker counted what."""
    if settings.workers > 1:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="lpg-metrics-")
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    if settings.metrics_addr:
        from sync.metrics import serve

        serve(settings.metrics_addr, Database(settings))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="lpg-sync: the offline-first sync server for LPG field operations")
    parser.add_argument("--host", default=None, help="address to bind (LPG_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (LPG_PORT, default 8000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (LPG_WORKERS, default 1)")
    parser.add_argument(
        "--database-url", default=None, help="SQLAlchemy URL (LPG_DATABASE_URL, default sqlite:///lpg.db)"
    )
    parser.add_argument("--no-demo", action="store_true", help="do not load the demo data into an empty database")
    parser.add_argument("--no-migrate", action="store_true", help="do not run migrations before serving")
    return parser.parse_args(argv)


def warn_missing_fonts() -> None:
    """One log line when a font the invoices are drawn with is missing (nothing when all are there)."""
    from domain.invoicing.outputs.fonts import font_warning, missing_fonts

    message = font_warning(missing_fonts())
    if message:
        log.warning(message)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    for name, value in (
        ("LPG_HOST", args.host),
        ("LPG_PORT", args.port),
        ("LPG_WORKERS", args.workers),
        ("LPG_DATABASE_URL", args.database_url),
    ):
        if value is not None:
            os.environ[name] = str(value)
    settings = Settings.from_env()
    if not settings.secret_key or "LPG_SECRET_KEY" not in os.environ:
        os.environ["LPG_SECRET_KEY"] = settings.secret_key  # every worker signs with the same key
    if not args.no_migrate:
        prepare(settings, demo=not args.no_demo)
    warn_missing_fonts()
    prepare_metrics(settings)
    import uvicorn

    log.info("serving on http://%s:%d (Swagger UI at /api/schema/swagger-ui/)", settings.host, settings.port)
    uvicorn.run(
        "server:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        # uvicorn's own default is 5 s, the same as many clients' pools: a request sent on a connection the
        # server is closing at that moment is reset. The server keeps idle connections longer, so the client
        # (or the load balancer) is the side that closes them.
        timeout_keep_alive=settings.keepalive_seconds,
    )


if __name__ == "__main__":
    main()
