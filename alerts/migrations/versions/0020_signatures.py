"""signatures: electronic signatures on batches (release, reject, hold, review)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("meaning", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), sa.ForeignKey("users.username"), nullable=False),
        sa.Column("printed_name", sa.String(200), nullable=False),
        sa.Column("signed_ms", sa.BigInteger, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("seal", sa.String(80)),
    )
    op.create_index("signatures_record", "signatures", ["entity", "entity_id", "signed_ms"])


def downgrade() -> None:
    op.drop_table("signatures")
