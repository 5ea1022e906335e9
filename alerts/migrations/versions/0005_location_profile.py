"""locations: the product profile a room or compartment is run for

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        batch.add_column(sa.Column("profile_id", sa.String(64)))
        batch.create_foreign_key("locations_profile_fk", "profiles", ["profile_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        batch.drop_constraint("locations_profile_fk", type_="foreignkey")
        batch.drop_column("profile_id")
