"""Document audiences: who may read each document (default `everyone`), and the audiences each recorded
answer was allowed to use.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("audiences", ARRAY(sa.Text), nullable=False,
                                         server_default=sa.text("'{everyone}'::text[]")))
    # A document nobody may read would silently vanish from every answer: at least one audience.
    op.create_check_constraint("documents_audiences_not_empty", "documents", "cardinality(audiences) > 0")
    op.add_column("interactions", sa.Column("audiences", ARRAY(sa.Text)))


def downgrade() -> None:
    op.drop_column("interactions", "audiences")
    op.drop_constraint("documents_audiences_not_empty", "documents", type_="check")
    op.drop_column("documents", "audiences")
