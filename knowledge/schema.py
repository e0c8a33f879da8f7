"""Tables of the knowledge base: documents, their chunks, the corpus state, term statistics and postings."""

from __future__ import annotations

from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, Computed, DateTime, Float, ForeignKey, Integer, String, Text, func
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


# A chunk's full-text weight for one of its lexemes, exactly what a search used to compute per query and chunk:
# ts_rank(tsv, <the lexeme as a one-term tsquery>, 1). The lexeme is quoted for tsquery input (' and \ escaped).
POSTING_WEIGHT = r"""ts_rank(c.tsv, ('''' || replace(replace(u.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery, 1)"""
# (lexeme, chunk_id, weight) for every lexeme of the chunks that a WHERE appended to it selects.
POSTINGS_SELECT = f"SELECT u.lexeme, c.id, {POSTING_WEIGHT} FROM chunks c, unnest(c.tsv) u"


class TermPosting(Base):
    """One row per (lexeme, chunk) with the chunk's precomputed full-text weight for it, kept by ingestion.

    The full-text half of a search reads the postings of the question's kept terms from this table's primary key
    alone (an index-only scan of at most `text_budget` rows) instead of fetching every matching chunk's row and
    ranking its tsvector: the same ranking at the cost of a few index pages (benchmarks/peer.py)."""

    __tablename__ = "term_postings"

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    chunk_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # no FK: ingestion deletes by key
    weight: Mapped[float] = mapped_column(Float(precision=24), nullable=False)  # real, as ts_rank returns


# Every chunk's postings, loaded before the key is built (far faster than row by row into the index): the
# migration's backfill and the benchmarks' bulk loader.
POSTINGS_REBUILD = (
    "ALTER TABLE term_postings DROP CONSTRAINT IF EXISTS term_postings_pkey",
    "TRUNCATE term_postings",
    f"INSERT INTO term_postings (lexeme, chunk_id, weight) {POSTINGS_SELECT}",
    # The key carries the weight, so a search reads postings from the index alone.
    "ALTER TABLE term_postings ADD CONSTRAINT term_postings_pkey PRIMARY KEY (lexeme, chunk_id) INCLUDE (weight)",
)
