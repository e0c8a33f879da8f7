"""Small, real test doubles shared by tests (no mocks of the database or cache)."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


class HashEmbedder:
    """A deterministic bag-of-words embedder of any dimension, for tests that need a second 'model'."""

    def __init__(self, dim: int = 16, name: str = "test:hash") -> None:
        self.dim = dim
        self.name = name

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            digest = hashlib.sha256(word.encode()).digest()
            vector[digest[0] % self.dim] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector + 1.0 / np.sqrt(self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def write(path, content: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


# A small leave policy several test modules share (vacation, part-time, carry-over, sick leave).
LEAVE = """# Leave Policy

## Vacation
Full-time employees receive 25 days of paid vacation per calendar year.
Part-time employees receive vacation pro-rated to their contracted hours.
Unused vacation days can be carried over until March 31 of the next year.

## Sick Leave
Tell your manager before 10:00 on the first day of illness.
A doctor's note is needed from the fourth consecutive day of absence.
"""
