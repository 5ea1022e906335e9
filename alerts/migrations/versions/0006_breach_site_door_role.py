"""breaches: the site they happened at (escalation policies are per site); locations:
the door contact is a sensor assignment (role "door") like any other sensor, so the
unused door_sensor column goes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("breaches") as batch:
        batch.add_column(sa.Column("site_id", sa.String(64)))
    with op.batch_alter_table("locations") as batch:
        batch.drop_column("door_sensor")


def downgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        batch.add_column(sa.Column("door_sensor", sa.String(128)))
    with op.batch_alter_table("breaches") as batch:
        batch.drop_column("site_id")
