"""Initial schema: documents, chunks (tsvector + embedding), corpus state, term stats, interactions,
feedback, model versions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from knowledge.schema import TSV_EXPRESSION

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DEFAULT_DIM = 384  # multilingual-e5-small; `policybot reindex` changes it for another model


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    dim = int(context.config.attributes.get("embedding_dim", DEFAULT_DIM))
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False, unique=True),
        sa.Column("link", sa.Text),
        sa.Column("doc_type", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("size_bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("uploaded_by", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now()),
    )
    op.create_index("documents_title_lower", "documents", [sa.text("lower(title)")])

    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("doc_title", sa.Text, nullable=False),
        sa.Column("section_path", sa.Text, nullable=False, server_default=""),
        sa.Column("page", sa.Integer),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tsv", TSVECTOR, sa.Computed(TSV_EXPRESSION, persisted=True)),
        sa.Column("embedding", Vector(dim), nullable=False),
    )
    op.create_index("chunks_document_id", "chunks", ["document_id"])
    op.create_index("chunks_tsv", "chunks", ["tsv"], postgresql_using="gin")
    op.execute(
        "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )

    op.create_table(
        "corpus_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("chunk_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("embedding_model", sa.Text),
        sa.Column("embedding_dim", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.CheckConstraint("id = 1", name="corpus_state_single_row"),
    )
    op.execute("INSERT INTO corpus_state (id, version) VALUES (1, 0)")

    op.create_table(
        "term_stats",
        sa.Column("lexeme", sa.Text, primary_key=True),
        sa.Column("ndoc", sa.Integer, nullable=False),
    )

    op.create_table(
        "interactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("conversation_id", sa.Text),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("rewritten_question", sa.Text),
        sa.Column("retrieved", JSONB, nullable=False, server_default="[]"),
        sa.Column("prompt_version", sa.String(32)),
        sa.Column("model", sa.Text),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("citations", JSONB, nullable=False, server_default="[]"),
        sa.Column("grounded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("corpus_version", sa.Integer),
        sa.Column("timings", JSONB, nullable=False, server_default="{}"),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("message_ref", sa.Text),
    )
    op.create_index("interactions_created_at", "interactions", ["created_at"])
    op.create_index("interactions_conversation", "interactions", ["conversation_id"])
    op.create_index("interactions_message_ref", "interactions", ["message_ref"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "interaction_id", sa.String(36), sa.ForeignKey("interactions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("correction", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.UniqueConstraint("interaction_id", "user_id", name="feedback_one_vote_per_user"),
        sa.CheckConstraint("rating IN (-1, 1)", name="feedback_rating_sign"),
    )
    op.create_index("feedback_interaction", "feedback", ["interaction_id"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Text, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("base_model", sa.Text),
        sa.Column("job_id", sa.Text),
        sa.Column("dataset_hash", sa.String(64)),
        sa.Column("metrics", JSONB, nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False, server_default="candidate"),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now()),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
    )
    # At most one active model: the answer core reads it on every uncached question.
    op.create_index(
        "model_versions_one_active", "model_versions", ["status"], unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    for table in ("model_versions", "feedback", "interactions", "term_stats", "corpus_state", "chunks", "documents"):
        op.drop_table(table)
