"""feed counts: a MariaDB unit writing many feed rows counts them itself, with two statements

Revision ID: 0004_feed_counts
Revises: 0003_ops
Create Date: 2026-12-07 18:00:00

The triggers of 0002_pull count every feed row as it is written: four upserts into `change_feed_counts` a
row, about a tenth of the database's time for a batch of 500 changes. On MariaDB a unit that writes many
feed rows now counts them with two set-based statements in its locked writes (`domain.ledger._upsert_feed`:
the rows it moves are subtracted before they move, all of them added after) and tells the triggers to
leave its rows alone: they skip a row whose seq lies in `@lpg_feed_lo .. @lpg_feed_hi`, the session
variables that unit sets for its own rows. Every other feed write on MariaDB resets both to NULL first,
so a range left behind by a failed statement never skips a later row. SQLite keeps the triggers as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_feed_counts"
down_revision: str | None = "0003_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKET = {"NEW": "(NEW.seq DIV 1024)", "OLD": "(OLD.seq DIV 1024)"}
# A row counted by its unit's own statements (alembic 0004_feed_counts); NULL variables skip nothing.
_SKIPPED = "(NEW.seq BETWEEN @lpg_feed_lo AND @lpg_feed_hi)"


def _keys(row: str) -> str:
    b = _BUCKET[row]
    return f"({row}.scope, {row}.entity, {b}), ({row}.scope, '*', {b}), (-1, {row}.entity, {b}), (-1, '*', {b})"


def _values(row: str) -> str:
    b = _BUCKET[row]
    return (
        f"({row}.scope, {row}.entity, {b}, 1), ({row}.scope, '*', {b}, 1), "
        f"(-1, {row}.entity, {b}, 1), (-1, '*', {b}, 1)"
    )


_INC = (
    f"INSERT INTO change_feed_counts (scope, entity, bucket, n) VALUES {_values('NEW')} "
    "ON DUPLICATE KEY UPDATE n = n + 1"
)
_DEC = f"UPDATE change_feed_counts SET n = n - 1 WHERE (scope, entity, bucket) IN ({_keys('OLD')})"
_MOVED = f"{_BUCKET['OLD']} <> {_BUCKET['NEW']} OR OLD.scope <> NEW.scope OR OLD.entity <> NEW.entity"


def _triggers(skip: bool) -> list[str]:
    unless = f"IF {_SKIPPED} IS NOT TRUE THEN " if skip else ""
    end = "; END IF" if skip else ""
    return [
        f"CREATE TRIGGER change_feed_counts_ins AFTER INSERT ON change_feed FOR EACH ROW "
        f"{'BEGIN ' if skip else ''}{unless}{_INC}{end}{'; END' if skip else ''}",
        "CREATE TRIGGER change_feed_counts_upd AFTER UPDATE ON change_feed FOR EACH ROW BEGIN "
        f"IF ({_MOVED}){f' AND {_SKIPPED} IS NOT TRUE' if skip else ''} THEN {_DEC}; {_INC}; END IF; END",
    ]


def _replace(skip: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for name in ("change_feed_counts_ins", "change_feed_counts_upd"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in _triggers(skip):
        op.execute(statement)


def upgrade() -> None:
    _replace(skip=True)


def downgrade() -> None:
    _replace(skip=False)
