"""HTTP handlers of the audit context: read-only. No write method exists (POST/PUT/PATCH/DELETE are 405)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from domain.api import ADMIN, Ctx, PageQuery, Router, paginate
from domain.audit.queries import audit_doc, audit_filter, time_bound
from domain.audit.schemas import AuditEntryOut, VerifyOut
from domain.audit.verify import verify_chain

router = Router("audit")


class AuditQuery(PageQuery):
    """Filters of `GET /api/v1/audit/` (see `domain.audit.queries.audit_filter`). Newest entries first."""

    entity_type: str | None = Field(None, min_length=1, max_length=40)
    entity_id: int | None = Field(None, ge=1, le=2**63 - 1)
    user: str | None = Field(None, min_length=1, max_length=150, description="a user id or a username")
    action: str | None = Field(None, min_length=1, max_length=40)
    date_from: str | None = Field(None, description="RFC 3339 time, or a date (that day in LPG_TIMEZONE)")
    date_to: str | None = Field(None, description="RFC 3339 time, or a date (that whole day, inclusive)")

    @field_validator("date_from", "date_to")
    @classmethod
    def _date_or_time(cls, value: str | None) -> str | None:
        if value is not None:
            time_bound(value, "date", "UTC", end=False)  # refused here, as a validation error naming the field
        return value

    def filters(self) -> dict[str, Any]:
        return self.model_dump(exclude={"page", "page_size"})


@router.get("/api/v1/audit/", query=AuditQuery, response=AuditEntryOut, auth=ADMIN, errors=("validation_error",))
def list_audit_entries(ctx: Ctx) -> dict[str, Any]:
    """The audit log, newest first, filtered by entity, user, action and time (admins only)."""
    query: AuditQuery = ctx.query
    return ctx.read(
        lambda s: paginate(ctx, s, audit_filter(s, ctx.settings.timezone, **query.filters()), audit_doc, query)
    )


@router.get("/api/v1/audit/verify/", response=VerifyOut, auth=ADMIN)
def verify_audit_log(ctx: Ctx) -> dict[str, Any]:
    """Recompute the hash chain; name the first broken entry (admins only)."""
    return verify_chain(ctx.db).as_dict()
