"""Decide whether the retrieved passages can answer the question at all.

Raw e5 cosine scores sit in a narrow band whose position depends on the corpus, so a fixed threshold is
fragile. The threshold is calibrated per corpus: a fixed set of questions that no HR handbook answers
("What is the capital of Australia?") is run against the corpus, and a question must beat the median of
their best similarities by MARGIN. The result is cached per corpus version (in-process and in Redis).

MARGIN is measured on three corpora (benchmarks/real_handbooks.py: the 18F handbook, 185 pages; Basecamp's,
16; our sample, 14) as answerable questions kept vs. unanswerable ones refused. The probes' median grows with
the corpus (more passages, a closer best match for anything) faster than the right passage's similarity does,
so the margin that keeps answerable questions shrinks as corpora grow: 0.05 (the first choice, tuned on the
sample) refused 30% of answerable questions on the 18F handbook. At 0.025 every dev set keeps at least 97% of
its answerable questions. The price is near-topic questions ("pet insurance" next to health insurance): e5
similarity does not separate them from paraphrased answerable ones on real handbooks, and neither did the
lexical signals tried (term coverage, unknown terms, score gaps). Refusing those needs a model that reads
question and passage together (an LLM: the prompt's rule 3 makes it refuse them; or a cross-encoder).

Audiences: a reader searches only the documents they may read, so the probes run against that same part of
the corpus: the threshold is calibrated per (corpus version, reader's audiences). The hub cut stays
corpus-wide: it is a property of passages (how close each sits to every question), one number that says
nothing of any restricted text.
"""

from __future__ import annotations

import logging
import json
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from knowledge import background as corpus_background
from knowledge.audiences import EVERYONE
from knowledge.background import PROBES, Background
from knowledge.embeddings import Embedder
from knowledge.retrieval import Passage, search

log = logging.getLogger(__name__)

MARGIN = 0.025
# Used only when the corpus is too small to calibrate against (or calibration fails).
FALLBACK_THRESHOLD = 0.84

# A question that clears the threshold by less than this is a close call: on the dev sets, 68% of the 18F
# handbook's unanswerable questions and 17% of its answerable ones. Too many answerable ones to refuse, so the
# extractive answer says it may not be exactly what was asked instead.
CLOSE_CALL = 0.02


@dataclass(frozen=True)
class Relevance:
    relevant: bool
    similarity: float
    threshold: float

    @property
    def close_call(self) -> bool:
        return self.relevant and self.similarity < self.threshold + CLOSE_CALL


def best_similarity(passages: list[Passage]) -> float:
    return max((p.similarity for p in passages if p.similarity is not None), default=0.0)


def judge(passages: list[Passage], threshold: float) -> Relevance:
    similarity = best_similarity(passages)
    return Relevance(bool(passages) and similarity >= threshold, similarity, threshold)


@dataclass(frozen=True)
class Calibration:
    """What the probes say about one corpus version."""

    threshold: float  # a question's best similarity must reach it to be answered
    background: Background  # for retrieval: which passages are hubs


class Calibrator:
    """Per-corpus relevance threshold and hub cut, computed once per corpus version and shared through Redis."""

    def __init__(self, embedder: Embedder, redis_client: redis.Redis, margin: float = MARGIN) -> None:
        self.embedder = embedder
        self.redis = redis_client
        self.margin = margin
        self._calibrations: dict[tuple[int, tuple[str, ...]], Calibration] = {}
        self._lock = threading.Lock()  # concurrent first questions calibrate once, not once each

    def threshold(self, sessions, corpus_version: int, audiences: Sequence[str] = (EVERYONE,)) -> float:
        return self.calibration(sessions, corpus_version, audiences).threshold

    def background(self, sessions, corpus_version: int) -> Background:
        return self.calibration(sessions, corpus_version).background

    def calibration(self, sessions, corpus_version: int, audiences: Sequence[str] = (EVERYONE,)) -> Calibration:
        """The calibration for readers of `audiences` (the probes search what they may read)."""
        slot = (corpus_version, tuple(sorted({*audiences, EVERYONE})))
        if slot in self._calibrations:
            return self._calibrations[slot]
        with self._lock:
            if slot in self._calibrations:
                return self._calibrations[slot]
            return self._compute(sessions, slot)

    def _compute(self, sessions, slot: tuple[int, tuple[str, ...]]) -> Calibration:
        corpus_version, audiences = slot
        key = f"policybot:relevance:{self.embedder.name}:{corpus_version}:{self.margin}:{','.join(audiences)}:v3"
        calibration = self._cached(key)
        if calibration is None:
            calibration = self._calibrate(sessions, audiences)
            try:
                self.redis.set(key, json.dumps({"threshold": calibration.threshold,
                                                "hub_cut": calibration.background.hub_cut}), ex=7 * 24 * 3600)
            except redis.RedisError:
                pass
        if len(self._calibrations) > 64:  # old corpus versions are never asked again
            self._calibrations.clear()
        self._calibrations[slot] = calibration
        return calibration

    def _cached(self, key: str) -> Calibration | None:
        try:
            raw = self.redis.get(key)
        except redis.RedisError:
            return None
        if not raw:
            return None
        data = json.loads(raw)
        return Calibration(float(data["threshold"]), Background(corpus_background.direction(self.embedder), float(data["hub_cut"])))

    def _calibrate(self, sessions, audiences: Sequence[str]) -> Calibration:
        vectors = corpus_background.probe_vectors(self.embedder)
        best = []
        with sessions() as session:
            background = corpus_background.measure(session, self.embedder)
            for probe, vector in zip(PROBES, vectors):
                best.append(best_similarity(search(session, self.embedder, probe, k=3, mode="vector",
                                                   query_embedding=vector, audiences=audiences)))
        if not any(best):
            return Calibration(FALLBACK_THRESHOLD, background)
        threshold = statistics.median(best) + self.margin
        log.info("relevance threshold %.3f (probe median %.3f + margin %.3f); hub cut %.3f", threshold,
                 statistics.median(best), self.margin, background.hub_cut)
        return Calibration(threshold, background)
