"""The server's counters (Prometheus): each process counts what it sees; `sync.metrics` exposes them with
the values read from the database. With PROMETHEUS_MULTIPROC_DIR set (several workers) they are kept in
files there, and any worker's scrape sums all of them."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.engine import Engine

REQUEST_SECONDS = Histogram(
    "lpg_http_request_duration_seconds",
    "Time to answer a request, by route template (not the raw path), method and status class",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUSHED_CHANGES = Counter(
    "lpg_push_changes_total", "Changes received by push and replay, by outcome and error code", ["status", "code"]
)
PUSH_BATCH_SIZE = Histogram(
    "lpg_push_batch_size", "Changes per pushed batch", buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000)
)
UNIT_RETRIES = Counter("lpg_db_unit_retries_total", "Units of work run again after a database error", ["error"])
EMAILS = Counter("lpg_outbox_sends_total", "Invoice e-mail tries by outcome (sent, retry, failed)", ["outcome"])
POOL_IN_USE = Gauge(
    "lpg_db_pool_connections_in_use",
    "Database connections checked out of this server's pools",
    multiprocess_mode="livesum",
)


def retried(error: object) -> None:
    """One unit of work retried after `error` (a deadlock, a lock wait timeout, a busy SQLite)."""
    args = getattr(error, "args", None)
    code = args[0] if args and isinstance(args[0], int) else type(error).__name__
    UNIT_RETRIES.labels(error=str(code)).inc()


def observe_pool(engine: Engine) -> None:
    """Count the connections of `engine` while they are checked out."""
    if getattr(engine, "_lpg_pool_observed", False):
        return
    engine._lpg_pool_observed = True  # type: ignore[attr-defined]
    event.listen(engine, "checkout", lambda *_: POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: POOL_IN_USE.dec())


def pushed(response: dict[str, Any]) -> None:
    """A push's or replay's answer: its batch size and each change's outcome."""
    results = response.get("results") or []
    PUSH_BATCH_SIZE.observe(len(results))
    for result in results:
        error = result.get("error") or {}
        PUSHED_CHANGES.labels(status=str(result.get("status")), code=str(error.get("code") or "")).inc()
