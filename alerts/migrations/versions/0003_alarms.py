"""alarms: the lifecycle of each breach's alarm

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "breach_id", sa.Integer(), sa.ForeignKey("breaches.id"), nullable=False, unique=True
        ),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("raised_ms", sa.BigInteger(), nullable=False),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("ack_comment", sa.Text()),
        sa.Column("acknowledged_ms", sa.BigInteger()),
        sa.Column("cleared_ms", sa.BigInteger()),
        sa.Column("closed_ms", sa.BigInteger()),
    )
    op.create_index("alarms_state", "alarms", ["state", "raised_ms"])


def downgrade() -> None:
    op.drop_table("alarms")
