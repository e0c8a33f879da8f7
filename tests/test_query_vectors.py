"""Question vectors kept in Redis (bot/query_vectors.py): a question asked before is not embedded again, even
after a policy change empties the answer cache; the vector is the one the embedder gives."""

from __future__ import annotations

import numpy as np
import redis

from bot.core import PolicyBot
from bot.query_vectors import QueryVectors
from knowledge.ingest import ingest_file
from tests.helpers import LEAVE, write


class Counting:
    """The real embedder, counting the questions it embeds."""

    def __init__(self, embedder) -> None:
        self.inner = embedder
        self.name = embedder.name
        self.dim = embedder.dim
        self.queries: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return self.inner.embed_query(text)

    def embed_passages(self, texts):
        return self.inner.embed_passages(texts)


def test_a_question_is_embedded_once(embedder, redis_client):
    counting = Counting(embedder)
    vectors = QueryVectors(redis_client)
    first = vectors.embed(counting, "How many vacation days do I get?")
    again = vectors.embed(counting, "How many vacation days do I get?")
    other = vectors.embed(counting, "how many vacation days do i get")  # another text: its own vector
    assert counting.queries == ["How many vacation days do I get?", "how many vacation days do i get"]
    assert again.dtype == np.float32 and np.array_equal(first, again)
    assert np.allclose(first, embedder.embed_query("How many vacation days do I get?"), atol=1e-6)
    assert not np.array_equal(first, other)


def test_another_embedder_does_not_reuse_the_vector(embedder, redis_client):
    vectors = QueryVectors(redis_client)
    one, two = Counting(embedder), Counting(embedder)
    two.name = "openai:another-model"
    vectors.embed(one, "Can I expense a coworking desk?")
    vectors.embed(two, "Can I expense a coworking desk?")
    assert len(one.queries) == 1 and len(two.queries) == 1


def test_redis_down_embeds(embedder):
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    counting = Counting(embedder)
    vector = QueryVectors(unreachable).embed(counting, "Who approves my travel?")
    assert vector.shape == (embedder.dim,) and counting.queries == ["Who approves my travel?"]


def test_after_a_policy_change_the_question_is_answered_anew_without_embedding_again(runtime, embedder, tmp_path):
    counting = Counting(embedder)
    runtime.embedder = counting
    ingest_file(runtime.sessions, embedder, write(tmp_path / "leave.md", LEAVE))
    bot = PolicyBot(runtime)
    first = bot.answer("How many vacation days do I get?", "U1")
    asked = len(counting.queries)
    ingest_file(runtime.sessions, embedder, write(tmp_path / "leave.md", LEAVE.replace("25 days", "28 days")))
    second = bot.answer("How many vacation days do I get?", "U1")
    assert "25 days" in first.text and not second.cached and "28 days" in second.text
    assert len(counting.queries) == asked  # the answer is new, the question's vector is not
