"""notifications: the providers' delivery reports

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("delivery", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("delivery")
