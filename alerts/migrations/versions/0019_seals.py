"""seals on the regulated records (alerts/seals.py); the rows already there are sealed
as they are

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TABLES = (
    "sites",
    "gateways",
    "locations",
    "sensor_assignments",
    "profiles",
    "batches",
    "stays",
    "calibrations",
    "calibration_certificates",
    "breaches",
    "alarms",
    "users",
)


def upgrade() -> None:
    from alerts.seals import reseal_table

    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("seal", sa.String(80)))
    for name in TABLES:
        reseal_table(op.get_bind(), name)


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("seal")
