"""The wire's own state: named checkpoints per user and CouchDB `_local` documents.

Importing this module registers every table of the system (sync -> reconcile -> domain), which is what
Alembic's environment does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, LongText, id_column
from domain.clock import utcnow
from reconcile.models import AppliedChange, RejectedChange  # noqa: F401  (registers their tables)


class Checkpoint(Base):
    """A named checkpoint per user, like CouchDB's `_local` documents: `{"seq": N}`."""

    __tablename__ = "sync_checkpoints"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouchLocalDoc(Base):
    """A CouchDB replicator's checkpoint document, stored faithfully per user and database view."""

    __tablename__ = "couch_local_docs"
    __table_args__ = (UniqueConstraint("user_id", "db", "doc_id"),)

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    db: Mapped[str] = mapped_column(String(64))
    doc_id: Mapped[str] = mapped_column(String(200))
    rev: Mapped[str] = mapped_column(String(64))
    doc: Mapped[str] = mapped_column(LongText)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


metadata = Base.metadata
