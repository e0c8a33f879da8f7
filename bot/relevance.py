"""Decide whether the retrieved passages can answer the question at all.

Raw e5 cosine scores sit in a narrow band whose position depends on the corpus, so a fixed threshold is
fragile. The threshold is calibrated per corpus: a fixed set of questions that no HR handbook answers
("What is the capital of Australia?") is run against the corpus, and a question must beat the median of
their best similarities by MARGIN. The result is cached per corpus version (in-process and in Redis).

MARGIN was chosen on the sample handbook's question set (README, "Relevance calibration"): at 0.05 it keeps
98% of answerable questions and refuses every off-topic question and the less close of the near-topic ones.
Near-topic questions that share the handbook's vocabulary ("pet insurance" next to health insurance) are the
weak spot of the extractive mode; with an LLM configured, the prompt's rule 3 makes the model refuse them.
"""

from __future__ import annotations

import logging
import statistics
import threading
from dataclasses import dataclass

import numpy as np
import redis

from knowledge.embeddings import Embedder
from knowledge.retrieval import Passage, search

log = logging.getLogger(__name__)

MARGIN = 0.05
# Used only when the corpus is too small to calibrate against (or calibration fails).
FALLBACK_THRESHOLD = 0.84

PROBES = (
    "What is the capital of Australia?", "How do I bake sourdough bread?", "Who won the football world cup in 2018?",
    "What is the boiling point of water at sea level?", "Recommend a good science fiction novel.",
    "How do I change a car tyre?", "What's the distance from the Earth to the Moon?",
    "Write a haiku about autumn leaves.", "How many legs does a spider have?",
    "What is the best way to learn to play the guitar?", "Explain how photosynthesis works.",
    "What time does the sun set in Iceland in June?", "Which programming language should I learn first?",
    "How do I get red wine out of a carpet?", "What are the rules of chess castling?",
    "Tell me a joke about penguins.", "How tall is Mount Everest?", "What is the plot of Hamlet?",
    "How do I grow tomatoes on a balcony?", "What's a good name for a goldfish?",
)


_PROBE_VECTORS: dict[str, list[np.ndarray]] = {}  # per embedding model; the probes never change


@dataclass(frozen=True)
class Relevance:
    relevant: bool
    similarity: float
    threshold: float


def best_similarity(passages: list[Passage]) -> float:
    return max((p.similarity for p in passages if p.similarity is not None), default=0.0)


def judge(passages: list[Passage], threshold: float) -> Relevance:
    similarity = best_similarity(passages)
    return Relevance(bool(passages) and similarity >= threshold, similarity, threshold)


class Calibrator:
    """Per-corpus relevance threshold, computed once per corpus version and shared through Redis."""

    def __init__(self, embedder: Embedder, redis_client: redis.Redis, margin: float = MARGIN) -> None:
        self.embedder = embedder
        self.redis = redis_client
        self.margin = margin
        self._thresholds: dict[int, float] = {}
        self._lock = threading.Lock()  # concurrent first questions calibrate once, not once each

    def threshold(self, sessions, corpus_version: int) -> float:
        if corpus_version in self._thresholds:
            return self._thresholds[corpus_version]
        with self._lock:
            if corpus_version in self._thresholds:
                return self._thresholds[corpus_version]
            return self._compute(sessions, corpus_version)

    def _compute(self, sessions, corpus_version: int) -> float:
        key = f"policybot:relevance:{self.embedder.name}:{corpus_version}:{self.margin}"
        value = self._cached(key)
        if value is None:
            value = self._calibrate(sessions)
            try:
                self.redis.set(key, value, ex=7 * 24 * 3600)
            except redis.RedisError:
                pass
        if len(self._thresholds) > 16:  # old corpus versions are never asked again
            self._thresholds.clear()
        self._thresholds[corpus_version] = value
        return value

    def _cached(self, key: str) -> float | None:
        try:
            raw = self.redis.get(key)
        except redis.RedisError:
            return None
        return float(raw) if raw else None

    def _calibrate(self, sessions) -> float:
        vectors = _PROBE_VECTORS.get(self.embedder.name)
        if vectors is None:
            vectors = _PROBE_VECTORS[self.embedder.name] = [self.embedder.embed_query(p) for p in PROBES]
        best = []
        with sessions() as session:
            for probe, vector in zip(PROBES, vectors):
                best.append(best_similarity(search(session, self.embedder, probe, k=3, mode="vector",
                                                   query_embedding=vector)))
        if not any(best):
            return FALLBACK_THRESHOLD
        threshold = statistics.median(best) + self.margin
        log.info("relevance threshold %.3f (probe median %.3f + margin %.3f)", threshold, statistics.median(best),
                 self.margin)
        return threshold
