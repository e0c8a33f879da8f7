"""Content gaps: what people asked and could not find, grouped, so HR knows which document to write or fix.

The questions are those the bot refused, that got a 👎, or that were taken to HR (escalations), in a time
window. They are grouped by meaning with the embedding model the corpus uses, no LLM:

- e5's cosine similarities sit in a narrow band for related and unrelated text alike (0.75–0.92 on HR
  questions), so each vector first has the embedder's background direction removed (the mean of questions no
  handbook answers, knowledge.background); paraphrases then score 0.5–0.7 and different topics below 0.5;
- average-linkage agglomerative clustering (two groups merge while the mean similarity between their
  questions is at least `similarity`): a question must be close to most of a group, not to one member, so one
  borderline question does not chain two topics together.

Each group reports how many questions it has, why they are there, a few examples, and the document whose
passage is nearest to the group (the one to fix, or none close: one to write).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.orm import sessionmaker

from knowledge.background import direction
from knowledge.embeddings import Embedder

DEFAULT_SIMILARITY = 0.5
MAX_QUESTIONS = 1000  # the most recent; average linkage is O(n²) memory and time per merge
EXAMPLES = 3

_QUESTIONS = text(
    """
    SELECT i.id, coalesce(i.rewritten_question, i.question) AS question, i.created_at,
           i.kind = 'refusal' AS refused,
           EXISTS (SELECT 1 FROM feedback f WHERE f.interaction_id = i.id AND f.rating < 0) AS thumbs_down,
           EXISTS (SELECT 1 FROM escalations e WHERE e.interaction_id = i.id) AS escalated
    FROM interactions i
    WHERE i.created_at >= :since AND i.platform <> 'eval'
      AND (i.kind = 'refusal'
           OR EXISTS (SELECT 1 FROM feedback f WHERE f.interaction_id = i.id AND f.rating < 0)
           OR EXISTS (SELECT 1 FROM escalations e WHERE e.interaction_id = i.id))
    ORDER BY i.created_at DESC
    LIMIT :limit
    """
)


@dataclass(frozen=True)
class GapQuestion:
    interaction_id: str
    question: str
    created_at: datetime
    reasons: tuple[str, ...]  # refused | thumbs_down | escalated


@dataclass(frozen=True)
class Gap:
    questions: list[GapQuestion]
    reasons: dict[str, int]
    nearest_document: str | None
    nearest_section: str | None
    nearest_similarity: float | None
    examples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def last_asked(self) -> datetime:
        return max(q.created_at for q in self.questions)

    def as_json(self) -> dict:
        return {
            "count": self.count, "reasons": self.reasons, "examples": self.examples,
            "nearest_document": self.nearest_document, "nearest_section": self.nearest_section,
            "nearest_similarity": None if self.nearest_similarity is None else round(self.nearest_similarity, 3),
            "last_asked": self.last_asked.isoformat(),
            "interactions": [q.interaction_id for q in self.questions],
        }


def parse_since(value: str) -> timedelta:
    """`30d`, `12h`, `2w` or `90m` as a timedelta; ValueError with what to write otherwise."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    value = (value or "").strip().lower()
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        raise ValueError(f"--since takes a number and a unit (m, h, d or w), e.g. 30d or 12h; not {value!r}")
    return timedelta(**{units[value[-1]]: int(value[:-1])})


def gap_questions(sessions: sessionmaker, since: timedelta, limit: int = MAX_QUESTIONS) -> list[GapQuestion]:
    start = datetime.now(timezone.utc) - since
    with sessions() as session:
        rows = session.execute(_QUESTIONS, {"since": start, "limit": limit}).all()
    return [GapQuestion(r.id, r.question, r.created_at,
                        tuple(name for name, on in (("refused", r.refused), ("thumbs_down", r.thumbs_down),
                                                    ("escalated", r.escalated)) if on))
            for r in rows]


def cluster(vectors: np.ndarray, similarity: float) -> list[list[int]]:
    """Average-linkage agglomerative clustering on cosine similarity: groups of row indices."""
    n = len(vectors)
    if n == 0:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    groups: list[list[int] | None] = [[i] for i in range(n)]
    for _ in range(n - 1):
        i, j = divmod(int(np.argmax(sims)), n)  # merged-away rows and columns hold -inf
        if sims[i, j] < similarity:
            break
        ni, nj = len(groups[i]), len(groups[j])
        # Lance–Williams update for average linkage: the merged group's mean similarity to every other group.
        merged = (ni * sims[i, :] + nj * sims[j, :]) / (ni + nj)
        sims[i, :] = merged
        sims[:, i] = merged
        sims[i, i] = -np.inf
        sims[j, :] = -np.inf
        sims[:, j] = -np.inf
        groups[i] = groups[i] + groups[j]
        groups[j] = None
    return [g for g in groups if g is not None]


def find_gaps(sessions: sessionmaker, embedder: Embedder, since: timedelta = timedelta(days=30),
              similarity: float = DEFAULT_SIMILARITY, limit: int = MAX_QUESTIONS) -> list[Gap]:
    """The groups of unanswered questions in the window, largest first."""
    questions = gap_questions(sessions, since, limit)
    if not questions:
        return []
    raw = np.array([_embedding(embedder, q.question) for q in questions])
    centered = raw - np.asarray(direction(embedder), dtype=np.float32)
    gaps = []
    with sessions() as session:
        for members in cluster(centered, similarity):
            group = [questions[i] for i in members]  # newest first: the query's order
            mean = raw[members].mean(axis=0)
            nearest = _nearest_passage(session, (mean / np.linalg.norm(mean)).tolist())
            reasons = Counter(reason for q in group for reason in q.reasons)
            examples = list(dict.fromkeys(q.question for q in group))[:EXAMPLES]
            gaps.append(Gap(group, dict(reasons), *nearest, examples=examples))
    gaps.sort(key=lambda g: (-g.count, -g.last_asked.timestamp()))
    return gaps


_VECTORS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_VECTORS_KEPT = 5000
_VECTORS_LOCK = threading.Lock()


def _embedding(embedder: Embedder, question: str) -> np.ndarray:
    """The question's vector, remembered in this process: the console's gaps page embeds the same questions on
    every view (~15 ms each with the local model)."""
    key = (getattr(embedder, "name", type(embedder).__name__), question)
    with _VECTORS_LOCK:
        vector = _VECTORS.get(key)
        if vector is not None:
            _VECTORS.move_to_end(key)
            return vector
    vector = np.asarray(embedder.embed_query(question), dtype=np.float32)
    with _VECTORS_LOCK:
        _VECTORS[key] = vector
        while len(_VECTORS) > _VECTORS_KEPT:
            _VECTORS.popitem(last=False)
    return vector


def _nearest_passage(session, vector: list[float]) -> tuple[str | None, str | None, float | None]:
    statement = text(
        "SELECT d.title, c.section_path, 1 - (c.embedding <=> :v) AS similarity FROM chunks c "
        "JOIN documents d ON d.id = c.document_id ORDER BY c.embedding <=> :v LIMIT 1"
    ).bindparams(bindparam("v", type_=Vector(len(vector))))
    row = session.execute(statement, {"v": vector}).first()
    return (row.title, row.section_path or None, float(row.similarity)) if row else (None, None, None)
