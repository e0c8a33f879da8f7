"""Tables of the knowledge base: documents, their chunks, the corpus state and term statistics."""

from __future__ import annotations

from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, Computed, DateTime, ForeignKey, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from knowledge.db import Base

# Full-text configuration used for the generated tsvector and for queries; they must match.
TS_CONFIG = "english"
SECTION_SEPARATOR = " › "
TSV_EXPRESSION = (
    f"setweight(to_tsvector('{TS_CONFIG}', doc_title || ' ' || section_path), 'A') || "
    f"setweight(to_tsvector('{TS_CONFIG}', text), 'B')"
)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False, unique=True)  # file name (or URL): identity
    link: Mapped[str | None] = mapped_column(Text)
    doc_type: Mapped[str] = mapped_column(String(16), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    uploaded_by: Mapped[str | None] = mapped_column(Text)
    # Who may read it (knowledge/audiences.py); retrieval filters on it in SQL. Migration 0002.
    audiences: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{everyone}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Chunk(Base):
    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    doc_title: Mapped[str] = mapped_column(Text, nullable=False)
    section_path: Mapped[str] = mapped_column(Text, nullable=False, default="")
    page: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    # Generated in the database: title and section path weigh more than body text.
    tsv: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_EXPRESSION, persisted=True))
    # Dimension is fixed by the migration (and `policybot reindex`); no dimension here keeps the model generic.
    embedding = mapped_column(Vector(), nullable=False)


class CorpusState(Base):
    """One row. `version` is bumped by every document change; the answer cache keys on it."""

    __tablename__ = "corpus_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    chunk_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # for IDF in full-text ranking
    embedding_model: Mapped[str | None] = mapped_column(Text)
    embedding_dim: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TermStat(Base):
    """Chunk frequency per lexeme, kept exact by ingestion; bounds the full-text half of a search."""

    __tablename__ = "term_stats"

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    ndoc: Mapped[int] = mapped_column(Integer, nullable=False)
