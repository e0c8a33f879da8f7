"""Notify on `policybot_answer_state` whenever the corpus version or the models change.

Each bot process keeps the corpus version and the active model in memory and listens on this channel
(bot/answer_state.py), instead of reading them from the database for every question. Statement-level triggers:
a change of many rows is one notification, sent when its transaction commits.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("corpus_state", "model_versions")


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION policybot_answer_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('policybot_answer_state', TG_TABLE_NAME);
            RETURN NULL;
        END $$""")
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_answer_state ON {table}")
        op.execute(f"CREATE TRIGGER {table}_answer_state AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION policybot_answer_state_changed()")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_answer_state ON {table}")
    op.execute("DROP FUNCTION IF EXISTS policybot_answer_state_changed()")
