"""The reconciler's memory: the idempotency ledger (also the persistent id map) and the rejection list."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, LongText, id_column
from domain.clock import utcnow
from domain.models import User  # noqa: F401  (the foreign keys below need the users table)


class AppliedChange(Base):
    """`(device_id, client_temp_id)` applied once, kept forever, with the result returned to the device."""

    __tablename__ = "sync_applied"
    __table_args__ = (UniqueConstraint("device_id", "client_temp_id"),)

    id: Mapped[int] = id_column()
    device_id: Mapped[str] = mapped_column(String(100))
    client_temp_id: Mapped[str] = mapped_column(String(100))
    op: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RejectedChange(Base):
    """A refused change with its payload and error, open until a later attempt of it applies."""

    __tablename__ = "sync_rejections"
    __table_args__ = (
        Index("ix_sync_rejections_device_temp", "device_id", "client_temp_id"),
        Index("ix_sync_rejections_device_id_id", "device_id", "id"),
    )

    id: Mapped[int] = id_column()
    device_id: Mapped[str] = mapped_column(String(100))
    client_temp_id: Mapped[str] = mapped_column(String(100))
    op: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(LongText)
    error_code: Mapped[str] = mapped_column(String(40))
    error: Mapped[str] = mapped_column(LongText)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
