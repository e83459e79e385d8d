"""Accounts: users with a role, the devices they push from, refresh-token families, login attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, Name, Versioned, id_column
from domain.clock import utcnow

ROLES = ("driver", "admin")


class User(Versioned, Base):
    """A person who logs in. Deactivated, never deleted: a deactivated user's tokens stop working at once."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('driver', 'admin')", name="role"),)

    id: Mapped[int] = id_column()
    username: Mapped[str] = mapped_column(String(150), unique=True)
    full_name: Mapped[str] = mapped_column(Name, default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Versioned, Base):
    """A tablet, registered to the user who first pushed from it; the sync registry's counters live here."""

    __tablename__ = "devices"

    id: Mapped[int] = id_column()
    device_id: Mapped[str] = mapped_column(String(100), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_push_at: Mapped[datetime | None]
    last_pull_at: Mapped[datetime | None]
    last_pulled_seq: Mapped[int | None] = mapped_column(BigInteger)
    applied_count: Mapped[int] = mapped_column(default=0)
    duplicate_count: Mapped[int] = mapped_column(default=0)
    rejected_count: Mapped[int] = mapped_column(default=0)
    app_version: Mapped[str | None] = mapped_column(String(40))
    clock_skew_ms: Mapped[int | None] = mapped_column(BigInteger)


class RefreshToken(Base):
    """One issued refresh token; rotation links a family, and reuse of a spent one revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = id_column()
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(String(100))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    replaced_by: Mapped[str | None] = mapped_column(String(64))


class LoginAttempt(Base):
    """Every login attempt, kept in the database so that throttling holds across server processes."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_client_addr_at", "client_addr", "at"),
        Index("ix_login_attempts_at", "at"),  # pruning by age
    )

    id: Mapped[int] = id_column()
    username: Mapped[str] = mapped_column(String(150))
    client_addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded: Mapped[bool] = mapped_column(default=False)
    # An attempt is reserved (neither), admitted to the password check, then settled with its outcome; the
    # throttle counts settled failures and makes later attempts wait for admitted ones (accounts.throttle).
    admitted: Mapped[bool] = mapped_column(default=True, server_default=true())
    settled: Mapped[bool] = mapped_column(default=True, server_default=true())
