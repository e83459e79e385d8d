"""The change feed (compacted: one row a record, at the seq of its latest change) and the counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, LongText

# scope 0: reference data every user may pull; otherwise the id of the driver who owns the record.
PUBLIC_SCOPE = 0


class FeedEntry(Base):
    """A record's current state in the feed. `doc` is its REST representation as JSON, written at commit."""

    __tablename__ = "change_feed"
    __table_args__ = (
        UniqueConstraint("entity", "entity_id"),
        Index("ix_change_feed_scope_seq", "scope", "seq"),
        Index("ix_change_feed_entity_seq", "entity", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int]
    scope: Mapped[int] = mapped_column(BigInteger, default=PUBLIC_SCOPE)
    deleted: Mapped[bool] = mapped_column(default=False)
    last_modified: Mapped[datetime]
    doc: Mapped[str] = mapped_column(LongText)


class Counter(Base):
    """A locked-row counter: document numbers per prefix and year, the feed seq, the audit chain's head."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    head: Mapped[str | None] = mapped_column(String(64))
