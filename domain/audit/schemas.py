"""What the audit API answers: an entry as stored, and the verification verdict."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryOut(BaseModel):
    """One audit entry. `context` is the JSON snapshot (`after`, `before` for updates, sync ids)."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="position in the chain: consecutive, in commit order")
    at: str = Field(description="server time the entry was recorded (RFC 3339, UTC)")
    user_id: int | None
    device_id: str | None
    action: str = Field(examples=["confirm"])
    entity_type: str = Field(examples=["distribution"])
    entity_id: int | None
    context: Any
    prev_hash: str = Field(description="the previous entry's hash (64 zeros for the first entry)")
    hash: str = Field(description="SHA-256 of this entry's canonical serialisation and prev_hash")


class BrokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    reason: str = Field(
        examples=["hash_mismatch"],
        description="hash_mismatch, prev_hash_mismatch, id_gap, head_mismatch or anchor_mismatch",
    )


class VerifyOut(BaseModel):
    """The chain recomputed from the first entry: intact, or the first broken entry."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    checked: int = Field(description="entries found intact before the first broken one (all when ok)")
    first_broken: BrokenEntry | None
