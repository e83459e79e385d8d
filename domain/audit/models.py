"""The black box: an append-only, hash-chained log of every state change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, LongText


class AuditEntry(Base):
    """One entry per affected record. Ids, `prev_hash` and `hash` are assigned at commit, in commit order."""

    __tablename__ = "audit_log"
    # The admin screen's questions: the history of one record, and what happened in a time window.
    __table_args__ = (
        Index("ix_audit_log_entity_type_entity_id", "entity_type", "entity_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    device_id: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    context: Mapped[str] = mapped_column(LongText)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
