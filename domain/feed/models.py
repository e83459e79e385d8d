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


# Seqs per bucket of `FeedCount` (a power of two: the triggers compute `seq >> 10` / `seq DIV 1024`).
COUNT_BUCKET = 1024
ALL_SCOPES, ALL_ENTITIES = -1, "*"


class FeedCount(Base):
    """How many feed rows of a scope and entity lie in a bucket of 1024 seqs; kept by triggers on
    `change_feed` (alembic 0002_pull; on MariaDB a unit with many feed rows counts them itself, alembic
    0004_feed_counts), so a pull's `pending` is exact without counting the feed itself.
    Scope -1 counts every scope, entity '*' every entity."""

    __tablename__ = "change_feed_counts"

    scope: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entity: Mapped[str] = mapped_column(String(20), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)
