"""profiles: a change scheduled to come in force at a later time

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("next_body", sa.Text, nullable=True))
        batch.add_column(sa.Column("next_from_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("next_from_ms")
        batch.drop_column("next_body")
