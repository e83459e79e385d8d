"""change-feed counts per seq bucket: an exact `pending` without counting a million rows

Revision ID: 0002_pull
Revises: 0002_audit
Create Date: 2026-11-25 13:40:00

`pending` on a pull is the number of feed rows in the caller's scope after the page. A COUNT over an index
range costs ~1 s per million rows on MariaDB, paid on every page of an initial pull. Instead, triggers on
`change_feed` keep a count per (scope, entity, bucket of 1024 seqs), plus the totals per scope (entity '*'),
per entity (scope -1) and overall (scope -1, entity '*'). A pull then sums at most a few thousand bucket
rows and counts at most 2 x 1024 feed rows at the two partial buckets.

Feed rows only ever move to a higher seq (an updated record takes the newest seq), so a bucket's counts
only change when a row moves in (its bucket is the newest) or out (one decrement).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_pull"
down_revision: str | None = "0002_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = ("change_feed_counts_ins", "change_feed_counts_upd", "change_feed_counts_del")


def _keys(row: str, bucket: str) -> str:
    return (
        f"({row}.scope, {row}.entity, {bucket}), ({row}.scope, '*', {bucket}), "
        f"(-1, {row}.entity, {bucket}), (-1, '*', {bucket})"
    )


def _values(row: str, bucket: str, n: int) -> str:
    return (
        f"({row}.scope, {row}.entity, {bucket}, {n}), ({row}.scope, '*', {bucket}, {n}), "
        f"(-1, {row}.entity, {bucket}, {n}), (-1, '*', {bucket}, {n})"
    )


def _sqlite() -> list[str]:
    new_b, old_b = "(NEW.seq >> 10)", "(OLD.seq >> 10)"
    inc = (
        f"INSERT INTO change_feed_counts (scope, entity, bucket, n) VALUES {_values('NEW', new_b, 1)} "
        "ON CONFLICT (scope, entity, bucket) DO UPDATE SET n = n + 1;"
    )
    dec = f"UPDATE change_feed_counts SET n = n - 1 WHERE (scope, entity, bucket) IN (VALUES {_keys('OLD', old_b)});"
    return [
        f"CREATE TRIGGER change_feed_counts_ins AFTER INSERT ON change_feed BEGIN {inc} END",
        "CREATE TRIGGER change_feed_counts_upd AFTER UPDATE ON change_feed "
        f"WHEN {old_b} <> {new_b} OR OLD.scope <> NEW.scope OR OLD.entity <> NEW.entity "
        f"BEGIN {dec} {inc} END",
        f"CREATE TRIGGER change_feed_counts_del AFTER DELETE ON change_feed BEGIN {dec} END",
    ]


def _mysql() -> list[str]:
    new_b, old_b = "(NEW.seq DIV 1024)", "(OLD.seq DIV 1024)"
    inc = (
        f"INSERT INTO change_feed_counts (scope, entity, bucket, n) VALUES {_values('NEW', new_b, 1)} "
        "ON DUPLICATE KEY UPDATE n = n + 1"
    )
    dec = f"UPDATE change_feed_counts SET n = n - 1 WHERE (scope, entity, bucket) IN ({_keys('OLD', old_b)})"
    return [
        f"CREATE TRIGGER change_feed_counts_ins AFTER INSERT ON change_feed FOR EACH ROW {inc}",
        "CREATE TRIGGER change_feed_counts_upd AFTER UPDATE ON change_feed FOR EACH ROW BEGIN "
        f"IF {old_b} <> {new_b} OR OLD.scope <> NEW.scope OR OLD.entity <> NEW.entity THEN "
        f"{dec}; {inc}; END IF; END",
        f"CREATE TRIGGER change_feed_counts_del AFTER DELETE ON change_feed FOR EACH ROW {dec}",
    ]


def upgrade() -> None:
    op.create_table(
        "change_feed_counts",
        sa.Column("scope", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "entity", "bucket", name=op.f("pk_change_feed_counts")),
    )
    bind = op.get_bind()
    # Rows already in the feed (a database migrated with data) are counted once.
    for scope, entity in (("scope", "entity"), ("scope", "'*'"), ("-1", "entity"), ("-1", "'*'")):
        bucket = "(seq >> 10)" if bind.dialect.name == "sqlite" else "(seq DIV 1024)"
        op.execute(
            f"INSERT INTO change_feed_counts (scope, entity, bucket, n) "
            f"SELECT {scope}, {entity}, {bucket}, COUNT(*) FROM change_feed GROUP BY 1, 2, 3"
        )
    for statement in _sqlite() if bind.dialect.name == "sqlite" else _mysql():
        op.execute(statement)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("change_feed_counts")
