"""Re-embed every chunk with the configured model (`policybot reindex`), e.g. after switching to OpenAI."""

from __future__ import annotations

from typing import Callable

from sqlalchemy import bindparam, text
from sqlalchemy.orm import sessionmaker
from pgvector.sqlalchemy import Vector

from knowledge import index
from knowledge.embeddings import Embedder
from knowledge.ingest import passage_text


def reindex(sessions: sessionmaker, embedder: Embedder, progress: Callable[[int, int], None] | None = None,
            batch: int = 64) -> int:
    """Re-embed all chunks in one transaction (searches keep seeing the old index until it commits)."""
    with sessions.begin() as session:
        index.lock_corpus(session)  # no ingestion while the column changes
        rows = session.execute(text("SELECT id, doc_title, section_path, text FROM chunks ORDER BY id")).all()
        dim = embedder.dim or _probe(embedder)
        index.set_dimension(session, dim)
        update = text("UPDATE chunks SET embedding = :embedding WHERE id = :id").bindparams(
            bindparam("embedding", type_=Vector(dim))
        )
        # An openai embedder sends up to `concurrency` batches at once: hand it that many per call.
        batch *= max(1, int(getattr(embedder, "concurrency", 1)))
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            vectors = embedder.embed_passages([passage_text(r.doc_title, r.section_path, r.text) for r in part])
            session.execute(update, [{"id": r.id, "embedding": v} for r, v in zip(part, vectors)])
            if progress:
                progress(min(start + batch, len(rows)), len(rows))
        index.finish_dimension_change(session)
        index.record_model(session, embedder)
        index.bump_corpus_version(session)
        return len(rows)


def _probe(embedder: Embedder) -> int:
    return len(embedder.embed_query("dimension probe"))
