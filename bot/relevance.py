"""Decide whether the retrieved passages can answer the question at all.

Raw e5 cosine scores sit in a narrow band, so the vector score alone is a fragile signal. The decision combines
it with lexical evidence: whether the question's distinctive terms (after the frequency cut) occur in the
top passages. Thresholds were calibrated on the sample handbook's question set (see README)."""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.retrieval import Passage

# Cosine similarity of question and best passage (multilingual-e5-small); see README "Relevance calibration".
STRONG_SIMILARITY = 0.86
SUPPORTED_SIMILARITY = 0.80
TOP_N = 3


@dataclass(frozen=True)
class Relevance:
    relevant: bool
    similarity: float
    lexical: bool


def judge(passages: list[Passage], strong: float = STRONG_SIMILARITY, supported: float = SUPPORTED_SIMILARITY) -> Relevance:
    if not passages:
        return Relevance(False, 0.0, False)
    top = passages[:TOP_N]
    similarity = max((p.similarity or 0.0) for p in top)
    lexical = any(p.text_rank is not None and p.matched_terms > 0 for p in top)
    relevant = similarity >= strong or (lexical and similarity >= supported)
    return Relevance(relevant, similarity, lexical)
