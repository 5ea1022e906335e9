"""places, sensors, profiles, batches and custody, calibrations, breaches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("county", sa.String(100)),
    )
    op.create_table(
        "locations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("door_sensor", sa.String(128)),
        sa.Column("door_open_max_min", sa.Float(), nullable=False),
    )
    op.create_table(
        "sensor_assignments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("sensor", sa.String(128), nullable=False),
        sa.Column("location_id", sa.String(64), sa.ForeignKey("locations.id"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("until_ms", sa.BigInteger()),
    )
    op.create_index("sensor_assignments_sensor", "sensor_assignments", ["gateway", "sensor"])
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(64), sa.ForeignKey("profiles.id"), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("origin_producer", sa.String(200), nullable=False),
        sa.Column("origin_village", sa.String(100)),
        sa.Column("origin_county", sa.String(100)),
        sa.Column("trace_code", sa.String(32), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "stays",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("location_id", sa.String(64), sa.ForeignKey("locations.id"), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("until_ms", sa.BigInteger()),
        sa.Column("handed_over_by", sa.String(128), nullable=False),
        sa.Column("temp_at_handover_c", sa.Float()),
        sa.Column("event", sa.String(32), nullable=False),
    )
    op.create_index("stays_location_time", "stays", ["location_id", "from_ms"])
    op.create_index("stays_batch", "stays", ["batch_id", "from_ms"])
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("sensor", sa.String(128), nullable=False),
        sa.Column("calibrated_ms", sa.BigInteger(), nullable=False),
        sa.Column("reference_instrument", sa.String(200), nullable=False),
        sa.Column("correction_c", sa.Float(), nullable=False),
        sa.Column("certificate", sa.String(300)),
        sa.Column("next_due_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("calibrations_sensor", "calibrations", ["gateway", "sensor", "calibrated_ms"])
    op.create_table(
        "breaches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("sensor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("raised_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger()),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("min_value", sa.Float()),
        sa.Column("max_value", sa.Float()),
        sa.Column("location_id", sa.String(64), sa.ForeignKey("locations.id")),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("batches", sa.Text(), nullable=False),
        sa.UniqueConstraint(
            "gateway", "sensor", "kind", "level", "start_ms", name="breaches_identity"
        ),
    )


def downgrade() -> None:
    for table in (
        "breaches",
        "calibrations",
        "stays",
        "batches",
        "profiles",
        "sensor_assignments",
        "locations",
        "sites",
    ):
        op.drop_table(table)
