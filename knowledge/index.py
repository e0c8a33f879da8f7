"""The embedding index's identity: which model built it, at what dimension, and the corpus version."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from knowledge.embeddings import Embedder, EmbeddingMismatch


def column_dimension(session: Session) -> int:
    """Dimension of chunks.embedding as declared in the database (vector(D) stores D as its typmod)."""
    return int(
        session.execute(
            text("SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'")
        ).scalar_one()
    )


def corpus_version(session: Session) -> int:
    return int(session.execute(text("SELECT version FROM corpus_state WHERE id = 1")).scalar_one())


def lock_corpus(session: Session) -> tuple[int, str | None, int | None]:
    """Lock the corpus row for this transaction: document changes happen one at a time."""
    row = session.execute(
        text("SELECT version, embedding_model, embedding_dim FROM corpus_state WHERE id = 1 FOR UPDATE")
    ).one()
    return int(row.version), row.embedding_model, row.embedding_dim


def bump_corpus_version(session: Session) -> int:
    return int(
        session.execute(
            text(
                "UPDATE corpus_state SET version = version + 1, chunk_total = (SELECT count(*) FROM chunks), "
                "updated_at = now() WHERE id = 1 RETURNING version"
            )
        ).scalar_one()
    )


def mismatch_message(stored_model: str, stored_dim: int, embedder: Embedder) -> str:
    return (
        f"The document index was built with {stored_model} ({stored_dim} dimensions), but the configured "
        f"embeddings are {embedder.name} ({embedder.dim or '?'} dimensions). "
        "Run `policybot reindex` to re-embed every document with the configured model, "
        "or set POLICYBOT_EMBEDDINGS back to the model that built the index."
    )


def check_compatible(session: Session, embedder: Embedder) -> None:
    """Raise EmbeddingMismatch when the stored index was built by another model or dimension."""
    row = session.execute(text("SELECT embedding_model, embedding_dim FROM corpus_state WHERE id = 1")).one()
    has_chunks = session.execute(text("SELECT EXISTS (SELECT 1 FROM chunks)")).scalar_one()
    if not has_chunks:
        return
    stored_dim = row.embedding_dim or column_dimension(session)
    stored_model = row.embedding_model or "an unknown model"
    if row.embedding_model != embedder.name or (embedder.dim and stored_dim != embedder.dim):
        raise EmbeddingMismatch(mismatch_message(stored_model, stored_dim, embedder))


def set_dimension(session: Session, dim: int) -> None:
    """Change chunks.embedding to vector(dim) and rebuild the HNSW index. Every embedding is cleared."""
    session.execute(text("DROP INDEX IF EXISTS chunks_embedding_hnsw"))
    session.execute(text("ALTER TABLE chunks ALTER COLUMN embedding DROP NOT NULL"))
    session.execute(text(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dim)}) USING NULL"))


def finish_dimension_change(session: Session) -> None:
    session.execute(text("ALTER TABLE chunks ALTER COLUMN embedding SET NOT NULL"))
    # The HNSW graph of 100k chunks is ~200 MB: built in memory it takes half the time (47 s -> 21 s).
    session.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
    session.execute(
        text(
            "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
    )


def record_model(session: Session, embedder: Embedder) -> None:
    session.execute(
        text("UPDATE corpus_state SET embedding_model = :model, embedding_dim = :dim WHERE id = 1"),
        {"model": embedder.name, "dim": embedder.dim},
    )
