"""sites: Chinese name, time zone, address; the gateways a county runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("name_zh", sa.String(200)))
        batch.add_column(
            sa.Column("timezone", sa.String(64), nullable=False, server_default="Asia/Shanghai")
        )
        batch.add_column(sa.Column("address", sa.String(300)))
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("name", sa.String(200)),
    )
    # the gateways a store already knows: those its sensor assignments name, at the site
    # of the location each first measured
    op.execute(
        "INSERT INTO gateways (id, site_id) "
        "SELECT a.gateway, MIN(l.site_id) FROM sensor_assignments a "
        "JOIN locations l ON l.id = a.location_id GROUP BY a.gateway"
    )


def downgrade() -> None:
    op.drop_table("gateways")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("address")
        batch.drop_column("timezone")
        batch.drop_column("name_zh")
