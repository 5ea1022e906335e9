"""sign_in_failures: failed sign-ins per key, shared by every API replica

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sign_in_failures_key_ts", "sign_in_failures", ["key", "ts_ms"])
    op.create_index("ix_sign_in_failures_ts", "sign_in_failures", ["ts_ms"])


def downgrade() -> None:
    op.drop_table("sign_in_failures")
