"""users: the sites they may see and act on, and a driver's truck

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        # site ids as a JSON list; the empty list is every site (what users saw before)
        batch.add_column(sa.Column("sites", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("truck", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("truck")
        batch.drop_column("sites")
