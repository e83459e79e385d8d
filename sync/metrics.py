"""Metrics in the Prometheus text format: `GET /metrics` (an admin's bearer token), or without a token on
a separate local address (`LPG_METRICS_ADDR`, e.g. 127.0.0.1:9100, served by `server.py`).

Two kinds of values:
- counted in the process that saw the event (request latency per route template, pushed changes by status
  and error code, batch sizes, units retried after a deadlock, e-mails sent or failed, pool connections
  in use). With several workers, `server.py` sets PROMETHEUS_MULTIPROC_DIR and every worker writes its
  values there; a scrape of any worker sums them all.
- read from the database at scrape time (the feed's head seq, each registered device's lag behind it, the outbox's
  depth and the age of its oldest pending e-mail), so they are right whichever process answers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.clock import utcnow
from domain.db import Database
from domain.metrics import REQUEST_SECONDS

log = logging.getLogger("lpg.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_DEVICES = 500  # the devices that pulled most recently are reported, so a scrape stays small


class RouteMetricsMiddleware:
    """Times every request and labels it with the route template Starlette matched (`unmatched` for a
    404 outside any route), so the series stay few whatever ids the paths carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates: dict[Any, str] | None = None

    def template(self, scope: Scope) -> str:
        if self.templates is None:
            router = scope.get("router") or getattr(scope.get("app"), "router", None)
            routes = getattr(router, "routes", [])
            self.templates = {getattr(r, "endpoint", None): getattr(r, "path", "") for r in routes}
        return self.templates.get(scope.get("endpoint"), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = _now()
        status = 500

        async def tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        finally:
            REQUEST_SECONDS.labels(
                method=scope.get("method", ""), route=self.template(scope), status=f"{status // 100}xx"
            ).observe(_now() - started)


def _now() -> float:
    import time

    return time.perf_counter()


class DatabaseCollector(Collector):
    """The values that live in the database, read at scrape time (right across processes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        from domain.accounts.models import Device
        from domain.feed.services import current_seq
        from domain.invoicing.outbox import depth

        def read(session: Any) -> tuple[int, list[Any], Any]:
            head = current_seq(session)
            devices = session.execute(
                select(Device.device_id, Device.last_pulled_seq, Device.last_pull_at)
                .where(Device.last_pulled_seq.is_not(None))
                .order_by(Device.last_pull_at.desc())
                .limit(MAX_DEVICES)
            ).all()
            return head, list(devices), depth(session)

        try:
            head, devices, outbox = self.db.read(read)
        except Exception:  # a scrape must answer even when the database does not
            log.exception("metrics: the database could not be read")
            up = GaugeMetricFamily("lpg_database_up", "Whether the scrape could read the database")
            up.add_metric([], 0)
            yield up
            return
        now = utcnow()
        up = GaugeMetricFamily("lpg_database_up", "Whether the scrape could read the database")
        up.add_metric([], 1)
        yield up
        feed = GaugeMetricFamily("lpg_feed_head_seq", "The change feed's highest committed seq")
        feed.add_metric([], head)
        yield feed
        lag = GaugeMetricFamily(
            "lpg_device_lag", "Feed seqs a device's last pull is behind the head", labels=["device"]
        )
        age = GaugeMetricFamily(
            "lpg_device_last_pull_age_seconds", "Seconds since a device last pulled", labels=["device"]
        )
        for device_id, pulled, pulled_at in devices:
            lag.add_metric([device_id], max(head - int(pulled), 0))
            age.add_metric([device_id], _age(now, pulled_at))
        yield lag
        yield age
        pending = GaugeMetricFamily("lpg_outbox_emails", "Invoice e-mails not sent, by status", labels=["status"])
        pending.add_metric(["pending"], outbox.pending)
        pending.add_metric(["failed"], outbox.failed)
        yield pending
        oldest = GaugeMetricFamily(
            "lpg_outbox_oldest_pending_age_seconds", "Age of the oldest invoice e-mail still pending (0: none)"
        )
        oldest.add_metric([], _age(now, outbox.oldest_pending_at) if outbox.oldest_pending_at else 0)
        yield oldest


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def exposition(db: Database) -> bytes:
    """Everything, in the text format: the processes' values (all workers' in multiprocess mode) and the
    database's."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
        process = b""
    else:
        process = generate_latest(REGISTRY)
    registry.register(DatabaseCollector(db))
    return process + generate_latest(registry)


def serve(addr: str, db: Database) -> ThreadingHTTPServer:
    """`LPG_METRICS_ADDR` (host:port): /metrics without a token, on an address only the scraper reaches."""
    host, _, port = addr.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = exposition(db)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="lpg-metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", host or "127.0.0.1", port)
    return server
