"""notifications: the durable outbox of alarm notifications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("sent_ms", sa.BigInteger()),
    )
    op.create_index("notifications_due", "notifications", ["state", "next_attempt_ms"])


def downgrade() -> None:
    op.drop_table("notifications")
