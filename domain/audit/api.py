"""HTTP handlers of the audit context: read-only. No write method exists (POST/PUT/PATCH/DELETE are 405)."""

from __future__ import annotations

from typing import Any

from domain.api import ADMIN, Ctx, Router, paginate
from domain.audit.queries import AuditQuery, audit_doc, audit_filter
from domain.audit.verify import verify_chain

router = Router("audit")


@router.get("/api/v1/audit/", query=AuditQuery, auth=ADMIN, errors=("validation_error",))
def list_audit_entries(ctx: Ctx) -> dict[str, Any]:
    """The audit log, newest first, filtered by entity, user, action and time (admins only)."""
    query: AuditQuery = ctx.query
    return ctx.read(lambda s: paginate(ctx, s, audit_filter(s, query, ctx.settings.timezone), audit_doc, query))


@router.get("/api/v1/audit/verify/", auth=ADMIN)
def verify_audit_log(ctx: Ctx) -> dict[str, Any]:
    """Recompute the hash chain; name the first broken entry (admins only)."""
    return verify_chain(ctx.db).as_dict()
