"""notifications: the facts a provider's template is filled with, and the provider's
receipt

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("fields", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("receipt", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("receipt")
        batch.drop_column("fields")
