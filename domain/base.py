"""The declarative base, column types and the version / last_modified pair every mutable row carries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, Numeric, String, Text, TypeDecorator, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.clock import utc_text, utcnow

# Stable constraint names, so Alembic migrations are the same on SQLite and MariaDB.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds (DATETIME(6) on MariaDB); always read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a UTC-aware value")
        return value.astimezone(UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return datetime_text
        return super().bind_processor(dialect)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def datetime_text(value: datetime | None) -> str | None:
    """A UTC datetime as `2026-11-24 03:15:30.123456`: how SQLite stores a DATETIME (SQLAlchemy's format, written
    in one step rather than through `process_bind_param` and `%`-formatting: a batch binds thousands), and text
    a MariaDB DATETIME(6) column reads exactly (`domain.ledger`'s many-row INSERTs send it so)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"a datetime is stored here, not {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a UTC-aware value")
    return utc_text(value, " ")  # cached: a change's rows share its timestamp


class LongText(TypeDecorator[str]):
    """JSON documents and snapshots: TEXT on SQLite, MEDIUMTEXT (16 MiB) on MariaDB."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.MEDIUMTEXT())
        return dialect.type_descriptor(Text())


# Integer keys everywhere: BIGINT on MariaDB, INTEGER (the rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

Money = Numeric(12, 2, asdecimal=True)
Rate = Numeric(12, 4, asdecimal=True)
Kg = Numeric(10, 2, asdecimal=True)
Reading = Numeric(14, 2, asdecimal=True)

Code = String(40)
Name = String(200)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        Decimal: Money,
        int: Integer(),
        str: String(255),
    }


def id_column() -> Mapped[int]:
    return mapped_column(BigId, primary_key=True, autoincrement=True)


class Versioned:
    """A mutable row: `version` starts at 1 and grows by one per change; `last_modified` is the server's time."""

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    def touch(self, now: datetime | None = None) -> None:
        """Record one change: bump the version, stamp the server time."""
        self.version = (self.version or 0) + 1
        self.last_modified = now or utcnow()


@event.listens_for(Versioned, "init", propagate=True)
def _new_row_is_version_one(target: Versioned, args: Any, kwargs: dict[str, Any]) -> None:
    """A new object is version 1, stamped now, before it is ever flushed (results and docs read these)."""
    kwargs.setdefault("version", 1)
    kwargs.setdefault("last_modified", utcnow())
