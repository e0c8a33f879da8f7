"""A partial index of the documents that can be closed to a reader (those without `everyone`).

Retrieval asks on every search whether any document is closed to the reader (knowledge/retrieval.py, `scope`);
over this index that is a read of an empty index in the common case instead of a scan of every document. The
predicate must stay the same text as knowledge.retrieval.RESTRICTED_DOCUMENT for the planner to use it
(tests/test_retrieval_plan.py checks that it does).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS documents_restricted ON documents (id) "
               "WHERE NOT (audiences @> '{everyone}'::text[])")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS documents_restricted")
