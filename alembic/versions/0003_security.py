"""login attempts: `admitted` and `settled`, so that the throttle counts only attempts that failed

Revision ID: 0003_security
Revises: 0002_pull
Create Date: 2026-12-05 07:40:00

An attempt is reserved (neither), admitted to the password check, then settled with its outcome. The
throttle counts settled failures; an admitted attempt still in flight only makes a later one wait for its
outcome, it never counts as a failure (40 drivers logging in at once from one address all succeed). Rows
written before this revision are settled.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_security"
down_revision: str | None = "0002_pull"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admitted", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("settled", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_column("settled")
        batch_op.drop_column("admitted")
