"""The answers that feedback was given on, read from `interactions` and `feedback`: each with every user's latest
vote, cached copies folded into the interaction that produced them."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.orm import sessionmaker

from bot.cache import normalize_question
from bot.finetune.markers import citation_positions

ANSWER_KINDS = ("llm", "extractive", "fallback")
EXCLUDED_PLATFORMS = ("eval",)  # evaluation runs are not feedback


@dataclass
class Vote:
    user_id: str
    rating: int
    correction: str | None
    at: datetime


@dataclass
class Candidate:
    """An answer that was actually generated (not a cache hit), with every vote on it and its cached copies."""

    interaction_id: str
    created_at: datetime
    question: str  # the standalone question the prompt was built with
    answer: str
    retrieved: list[dict]
    citations: list[dict]
    kind: str
    votes: dict[str, Vote] = field(default_factory=dict)  # user -> latest vote

    def vote(self, vote: Vote) -> None:
        current = self.votes.get(vote.user_id)
        if current is None or vote.at >= current.at:
            # a later vote without a correction keeps an earlier correction by the same user (as feedback does)
            if current is not None and vote.correction is None and vote.rating == current.rating:
                vote.correction = current.correction
            self.votes[vote.user_id] = vote

    @property
    def ups(self) -> int:
        return sum(1 for v in self.votes.values() if v.rating > 0)

    @property
    def downs(self) -> int:
        return sum(1 for v in self.votes.values() if v.rating < 0)

    @property
    def verdict(self) -> int:
        """+1 liked, -1 disliked, 0 undecided (as many 👍 as 👎)."""
        return (self.ups > self.downs) - (self.downs > self.ups)

    @property
    def sources_key(self) -> tuple:
        return tuple((r.get("chunk_id"), r.get("document_id"), r.get("document_version")) for r in self.retrieved)

    @property
    def cited(self) -> set[int]:
        """1-based snapshot positions of the passages the answer cited (its sources)."""
        return set(citation_positions(self.citations, self.retrieved).values())

    @property
    def documents(self) -> frozenset[tuple[int, int]]:
        """(document id, version) of the answer's sources: what must still be current for the example to hold."""
        return frozenset((int(self.retrieved[p - 1]["document_id"]), int(self.retrieved[p - 1].get("document_version") or 0))
                         for p in self.cited)


_FEEDBACK = text(
    """
    SELECT i.id, i.created_at, i.question, i.rewritten_question, i.answer, i.retrieved, i.citations, i.kind,
           i.cached, f.user_id AS voter, f.rating, f.correction, f.updated_at AS voted_at
    FROM feedback f JOIN interactions i ON i.id = f.interaction_id
    WHERE i.kind IN :kinds AND i.platform NOT IN :platforms
    ORDER BY i.created_at, i.id, f.updated_at
    """
).bindparams(bindparam("kinds", expanding=True), bindparam("platforms", expanding=True))

_ORIGINS = text(
    """
    SELECT id, created_at, question, rewritten_question, answer, retrieved, citations, kind
    FROM interactions
    WHERE NOT cached AND kind IN :kinds AND answer IN :answers AND jsonb_array_length(retrieved) > 0
    ORDER BY created_at DESC
    """
).bindparams(bindparam("kinds", expanding=True), bindparam("answers", expanding=True))

_DOCUMENTS = text("SELECT id, version FROM documents")


def load_candidates(sessions: sessionmaker, correction_authors: set[str] | None = None) -> tuple[list[Candidate], Counter]:
    """Answers with feedback, cached copies folded into their origin. Returns (candidates, skipped counts)."""
    skipped: Counter = Counter()
    with sessions() as session:
        rows = session.execute(_FEEDBACK, {"kinds": list(ANSWER_KINDS), "platforms": list(EXCLUDED_PLATFORMS)}).all()
        cached_answers = sorted({r.answer for r in rows if r.cached or not r.retrieved})
        origins = (
            session.execute(_ORIGINS, {"kinds": list(ANSWER_KINDS), "answers": cached_answers}).all()
            if cached_answers else []
        )
    by_answer: dict[str, list] = defaultdict(list)
    for origin in origins:
        by_answer[origin.answer].append(origin)

    candidates: dict[str, Candidate] = {}

    def candidate_for(row) -> Candidate:
        if row.id not in candidates:
            candidates[row.id] = Candidate(
                interaction_id=row.id, created_at=row.created_at, question=row.rewritten_question or row.question,
                answer=row.answer, retrieved=list(row.retrieved or []), citations=list(row.citations or []),
                kind=row.kind,
            )
        return candidates[row.id]

    for row in rows:
        correction = row.correction
        if correction and correction_authors is not None and row.voter not in correction_authors:
            skipped["correction_not_by_admin"] += 1
            correction = None
        vote = Vote(row.voter, int(row.rating), correction if row.rating < 0 else None, row.voted_at)
        if row.cached or not row.retrieved:
            question = normalize_question(row.rewritten_question or row.question)
            origin = next(
                (o for o in by_answer.get(row.answer, [])
                 if o.created_at <= row.created_at and normalize_question(o.rewritten_question or o.question) == question),
                None,
            )
            if origin is None:
                skipped["cached_without_origin"] += 1
                continue
            candidate_for(origin).vote(vote)
        else:
            candidate_for(row).vote(vote)
    return sorted(candidates.values(), key=lambda c: (c.created_at, c.interaction_id)), skipped


def current_documents(sessions: sessionmaker) -> dict[int, int]:
    with sessions() as session:
        return {int(r.id): int(r.version) for r in session.execute(_DOCUMENTS)}


def document_audiences(sessions: sessionmaker) -> dict[int, tuple[str, ...]]:
    """Who may read each current document (documents.audiences, migration 0002)."""
    with sessions() as session:
        return {int(r.id): tuple(r.audiences or ("everyone",))
                for r in session.execute(text("SELECT id, audiences FROM documents"))}
