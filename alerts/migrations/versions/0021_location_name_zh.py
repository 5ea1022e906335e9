"""locations: their name in Chinese (the rows are sealed again: a new column is part of
what a seal covers)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from alerts.seals import reseal_table

    with op.batch_alter_table("locations") as batch:
        batch.add_column(sa.Column("name_zh", sa.String(200)))
    reseal_table(op.get_bind(), "locations")


def downgrade() -> None:
    from alerts.seals import reseal_table

    with op.batch_alter_table("locations") as batch:
        batch.drop_column("name_zh")
    reseal_table(op.get_bind(), "locations")
