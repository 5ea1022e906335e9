"""evaluator_states: what each sensor's evaluation has under way, for a restart without
a readings store

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluator_states",
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("sensor", sa.String(128), primary_key=True),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("saved_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("evaluator_states")
