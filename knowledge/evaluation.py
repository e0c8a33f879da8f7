"""Retrieval evaluation on a question set: recall@1, recall@5 and MRR for each retrieval mode.

A question file is JSON lines: {"question", "document" (file name or title, null when the documents do not
answer it), "section" (heading of the answering section), "answer_key" (phrases a right answer contains)}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from knowledge.background import measure as measure_background
from knowledge.embeddings import Embedder
from knowledge.retrieval import MODES, Passage, search


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    document: str | None
    section: str | None = None
    answer_key: list[str] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return bool(self.document)


def load_questions(path: Path) -> list[EvalQuestion]:
    questions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                EvalQuestion(
                    question=row["question"], document=row.get("document"), section=row.get("section"),
                    answer_key=list(row.get("answer_key") or []),
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a question line ({err}); expected JSON with a 'question'") from err
    return questions


def is_expected_document(passage: Passage, expected: str) -> bool:
    """The expected document may be named by file name (as ingested from a folder) or by title."""
    want = expected.strip().lower()
    source = passage.source.lower()
    return source == want or source.endswith("/" + want) or passage.title.lower() == want


def is_expected_section(passage: Passage, question: EvalQuestion) -> bool:
    if not question.section:
        return is_expected_document(passage, question.document or "")
    # The document's title is its top heading: an answer in the opening text sits under it.
    return is_expected_document(passage, question.document or "") and question.section.lower() in (
        f"{passage.title} › {passage.section}".lower()
    )


def evaluate_retrieval(sessions: sessionmaker, embedder: Embedder, questions: list[EvalQuestion],
                       k: int = 5) -> dict:
    answerable = [q for q in questions if q.answerable]
    report: dict = {"questions": len(answerable), "modes": {}, "misses": {}}
    embeddings = {q.question: embedder.embed_query(q.question) for q in answerable}  # once, shared by modes
    with sessions() as session:
        background = measure_background(session, embedder)  # as the bot ranks: hubs lower
        for mode in MODES:
            doc_ranks, section_hits, misses = [], 0, []
            for q in answerable:
                passages = search(session, embedder, q.question, k=k, mode=mode, query_embedding=embeddings[q.question],
                                  background=background)
                rank = next((i for i, p in enumerate(passages, 1) if is_expected_document(p, q.document)), None)
                doc_ranks.append(rank)
                section_hits += any(is_expected_section(p, q) for p in passages)
                if rank is None:
                    misses.append(q.question)
            n = max(len(answerable), 1)
            report["modes"][mode] = {
                "recall@1": sum(1 for r in doc_ranks if r == 1) / n,
                f"recall@{k}": sum(1 for r in doc_ranks if r) / n,
                "mrr": sum(1 / r for r in doc_ranks if r) / n,
                f"section_recall@{k}": section_hits / n,
            }
            report["misses"][mode] = misses
    return report
