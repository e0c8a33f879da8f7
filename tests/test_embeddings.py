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


def test_openai_batches_are_sent_concurrently_bounded_and_kept_in_order(settings, fake_openai):
    openai_settings = settings.model_copy(update={
        "embeddings": "openai", "embedding_batch": 2, "embedding_concurrency": 3,
        "openai_api_key": "k", "openai_base_url": fake_openai.base_url,
    })
    texts = [f"passage number {i} about topic{i}" for i in range(20)]
    sequential = make_embedder(openai_settings.model_copy(update={"embedding_concurrency": 1})).embed_passages(texts)
    assert fake_openai.embedding_max_in_flight == 1
    fake_openai.embedding_delay_s = 0.05  # each batch takes a while, as a real server's would
    embedder = make_embedder(openai_settings)
    assert embedder.concurrency == 3
    concurrent = embedder.embed_passages(texts)
    assert 1 < fake_openai.embedding_max_in_flight <= 3  # overlapping, never more than the bound
    assert np.array_equal(concurrent, sequential)  # every vector back in its passage's place


def test_bulk_commands_embed_on_every_core(settings):
    import os

    from knowledge.embeddings import bulk_threads

    assert make_embedder(settings).threads == settings.embedding_threads == 1  # serving: one thread
    assert make_embedder(settings, bulk=True).threads == len(os.sched_getaffinity(0))
    assert make_embedder(settings.model_copy(update={"embedding_bulk_threads": 3}), bulk=True).threads == 3
    assert bulk_threads(0) >= 1
