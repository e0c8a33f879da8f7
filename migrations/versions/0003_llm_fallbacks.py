"""Fallback records on interactions: which model failed, why, and its raw reply (bounded).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("interactions", sa.Column("fallback_model", sa.Text()))
    op.add_column("interactions", sa.Column("fallback_reason", sa.String(32)))
    op.add_column("interactions", sa.Column("fallback_reply", sa.Text()))


def downgrade() -> None:
    for column in ("fallback_reply", "fallback_reason", "fallback_model"):
        op.drop_column("interactions", column)
