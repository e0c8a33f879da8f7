"""Term postings: (lexeme, chunk) -> the chunk's precomputed full-text weight, for the search's full-text half.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from knowledge.schema import POSTINGS_REBUILD

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE term_postings (lexeme text NOT NULL, chunk_id bigint NOT NULL, weight real NOT NULL)")
    for statement in POSTINGS_REBUILD:  # the existing chunks' postings
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("term_postings")
