"""operations: the meter's billing baseline, the invoice e-mail outbox, login attempts pruned by age

Revision ID: 0003_ops
Revises: 0003_security

- `meters.last_billed_reading`: what a sale's usage counts from (the reading of the last confirmed sale that
  billed the meter, or its first reading, the baseline). Derived for existing meters from their readings: the
  latest one written by a sale, else the first one. A reading taken without a sale no longer moves it.
- `email_outbox`: one row per invoice to e-mail, written in the confirm's own transaction and sent by every
  server process's sender (claimed with a lease; a stable Message-ID per row).
- `ix_login_attempts_at`: old login attempts are deleted by age.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.base

revision: str = "0003_ops"
down_revision: str | None = "0003_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("meters", sa.Column("last_billed_reading", sa.Numeric(precision=14, scale=2), nullable=True))
    op.execute(
        "UPDATE meters SET last_billed_reading = COALESCE("
        "(SELECT r.reading FROM meter_readings r WHERE r.meter_id = meters.id AND r.transaction_id IS NOT NULL"
        " ORDER BY r.id DESC LIMIT 1),"
        "(SELECT r.reading FROM meter_readings r WHERE r.meter_id = meters.id ORDER BY r.id LIMIT 1))"
    )
    op.create_index("ix_login_attempts_at", "login_attempts", ["at"])
    op.create_table(
        "email_outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("invoice_id", BigId, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", domain.base.UTCDateTime(), nullable=False),
        sa.Column("lease_until", domain.base.UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", domain.base.UTCDateTime(), nullable=False),
        sa.Column("sent_at", domain.base.UTCDateTime(), nullable=True),
        sa.Column("sent_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f("ck_email_outbox_status")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_email_outbox_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_outbox")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_email_outbox_invoice_id")),
        sa.UniqueConstraint("message_id", name=op.f("uq_email_outbox_message_id")),
    )
    op.create_index("ix_email_outbox_status_next_attempt_at", "email_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_email_outbox_status_next_attempt_at", table_name="email_outbox")
    op.drop_table("email_outbox")
    op.drop_index("ix_login_attempts_at", table_name="login_attempts")
    # Plain DROP COLUMN (SQLite >= 3.35): batch mode would copy the table its readings refer to.
    op.drop_column("meters", "last_billed_reading")
