"""Embedding backends: the bundled local e5 model and an OpenAI-compatible endpoint (local fake server)."""

import numpy as np
import pytest

from bot.runtime import build_runtime, make_embedder
from knowledge import index
from knowledge.embeddings import EmbeddingMismatch
from knowledge.ingest import ingest_file
from knowledge.retrieval import search
from tests.helpers import write

DOC = "# Travel\n\n## Trains\nSecond-class train tickets are reimbursed for trips under four hours."


def test_local_e5_query_and_passage_modes(embedder):
    query = embedder.embed_query("train tickets")
    passages = embedder.embed_passages(["Second-class train tickets are reimbursed.", "The canteen opens at noon."])
    assert query.shape == (384,) and passages.shape == (2, 384)
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-3
    assert passages[0] @ query > passages[1] @ query


def test_openai_embeddings_batched_and_index_follows_dimension(settings, fake_openai, tmp_path):
    openai_settings = settings.model_copy(update={
        "embeddings": "openai", "embedding_model": "text-embedding-3-small", "embedding_batch": 2,
        "openai_api_key": "k", "openai_base_url": fake_openai.base_url,
    })
    runtime = build_runtime(openai_settings)
    try:
        long_doc = DOC + "\n\n## Planes\n" + " ".join(f"Rule {i} applies to flights." for i in range(120))
        result = ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "travel.md", long_doc))
        calls = [r["json"] for r in fake_openai.requests if r["path"] == "/embeddings"]
        assert result.chunks >= 2 and all(len(c["input"]) <= 2 for c in calls)  # batched
        with runtime.sessions() as s:
            assert index.column_dimension(s) == fake_openai.embedding_dim  # empty index took the model's size
            hits = search(s, runtime.embedder, "train tickets", k=1)
        assert hits and hits[0].source == "travel.md"
    finally:
        runtime.close()


def test_switching_model_needs_reindex(runtime, settings, fake_openai, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "travel.md", DOC))
    openai_settings = settings.model_copy(update={
        "embeddings": "openai", "openai_api_key": "k", "openai_base_url": fake_openai.base_url,
    })
    with pytest.raises(EmbeddingMismatch, match="reindex"):
        build_runtime(openai_settings)


def test_unknown_backend_is_a_clear_error(settings):
    with pytest.raises(ValueError, match="POLICYBOT_EMBEDDINGS"):
        make_embedder(settings.model_copy(update={"embeddings": "magic"}))
