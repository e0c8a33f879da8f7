"""Question embeddings kept in Redis, so a question asked before is not embedded again.

Why: embedding is the costliest CPU step of an uncached answer (~30 ms of a core for a question with the local
model), and a question's vector does not change when its answer does. Every policy change or model promotion
empties the answer cache at once (bot/cache.py), and then the questions people keep asking come back; the same
question asked in a DM (other audiences, another answer key) and the channel's hint search (core._hint_private)
need the same vector too. Keyed by the embedder's name and the exact text (the answer cache's normalization
would change the vector, so retrieval would not be the same), stored as float32 bytes (1.5 KB at 384
dimensions). Redis down: embed as before.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import redis

from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

PREFIX = "policybot:qvec:"
TTL_S = 7 * 24 * 3600  # the same embedder always gives the same vector: the TTL only bounds Redis memory


def vector_key(embedder: Embedder, text: str) -> str:
    digest = hashlib.sha256(f"{embedder.name}\x1f{embedder.dim}\x1f{text}".encode()).hexdigest()
    return PREFIX + digest


class QueryVectors:
    def __init__(self, client: redis.Redis, ttl_s: int = TTL_S) -> None:
        self.client = client
        self.ttl_s = ttl_s

    def embed(self, embedder: Embedder, text: str) -> np.ndarray:
        """`embedder.embed_query(text)`, from Redis when this embedder has embedded this text before."""
        key = vector_key(embedder, text)
        try:
            raw = self.client.get(key)
        except redis.RedisError as err:
            log.debug("question vectors unavailable (%s); embedding", err)
            return embedder.embed_query(text)
        if raw is not None and len(raw) == 4 * embedder.dim:
            return np.frombuffer(raw, dtype=np.float32).copy()
        vector = np.asarray(embedder.embed_query(text), dtype=np.float32)
        try:
            self.client.set(key, vector.tobytes(), ex=self.ttl_s)
        except redis.RedisError as err:
            log.debug("could not keep a question vector (%s)", err)
        return vector
