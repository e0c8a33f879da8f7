"""Escalations: a question an employee took to a person (HR), its thread in the HR channel, and the reply.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("interaction_id", sa.String(36), sa.ForeignKey("interactions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("anonymous", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reply_to", JSONB, nullable=False, server_default="{}"),
        sa.Column("hr_conversation", sa.Text),
        sa.Column("hr_thread", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("answered_by", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_by", sa.Text),
        sa.UniqueConstraint("interaction_id", "user_id", name="escalations_one_per_user_and_answer"),
    )
    op.create_index("escalations_hr_thread", "escalations", ["platform", "hr_conversation", "hr_thread"])
    op.create_index("escalations_created_at", "escalations", ["created_at"])


def downgrade() -> None:
    op.drop_table("escalations")
