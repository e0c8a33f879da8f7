"""The extractive answerer: the best sentences of the best passages, cited [n]. It never invents anything.

Used when no LLM is configured (the embedded default) and as the fallback when the LLM fails."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.textmatch import terms
from knowledge.chunking import split_sentences

MAX_SENTENCES = 3
MAX_CHARS = 700
_QUANTITY_QUESTION = re.compile(r"\b(how (many|much|long|often|soon|far)|when|what (is|are) the (limit|amount|rate))\b", re.I)
_HAS_NUMBER = re.compile(r"\d")
# Text that addresses the assistant instead of employees is never repeated as an answer.
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules?|prompt)\b|\b(system prompt|you are now|as an ai)\b",
    re.I,
)


@dataclass(frozen=True)
class ExtractedSentence:
    passage_index: int  # 0-based into the passages given
    position: int  # order inside the passage
    text: str
    score: float


def _candidates(question: str, passage_texts: list[str], focus: str | None) -> list[ExtractedSentence]:
    wanted = terms(question)
    focused = terms(focus) if focus else set()
    wants_number = bool(_QUANTITY_QUESTION.search(question))
    found = []
    for p_index, passage in enumerate(passage_texts):
        for position, sentence in enumerate(split_sentences(passage)):
            sentence = sentence.strip().lstrip("-•* ").strip()
            if len(sentence) < 12 or _INSTRUCTION.search(sentence):
                continue
            sentence_terms = terms(sentence)
            overlap = len(wanted & sentence_terms) + len(focused & sentence_terms)
            score = overlap / (1 + len(wanted)) ** 0.5
            if wants_number and _HAS_NUMBER.search(sentence):
                score += 0.35
            score += 0.3 / (1 + p_index) + 0.1 / (1 + position)  # earlier passages and sentences lead
            found.append(ExtractedSentence(p_index, position, sentence, score))
    return found


def extract_answer(question: str, passage_texts: list[str], intro: str = "Here's what our policies say:",
                   focus: str | None = None) -> str:
    """An answer made of the passages' own sentences, each followed by its source marker [n] (1-based).

    `focus` is the user's latest message when `question` was rewritten from a follow-up: its words count twice.
    """
    candidates = sorted(_candidates(question, passage_texts, focus), key=lambda s: -s.score)
    chosen: list[ExtractedSentence] = []
    per_passage: dict[int, int] = {}
    length = 0
    for sentence in candidates:
        if len(chosen) >= MAX_SENTENCES or (chosen and length + len(sentence.text) > MAX_CHARS):
            continue
        if per_passage.get(sentence.passage_index, 0) >= 2:
            continue
        if chosen and sentence.score < chosen[0].score * 0.5:  # weak extras dilute the answer
            continue
        chosen.append(sentence)
        per_passage[sentence.passage_index] = per_passage.get(sentence.passage_index, 0) + 1
        length += len(sentence.text)
    if not chosen:
        return ""
    # Read in document order: by passage rank, then position within the passage.
    chosen.sort(key=lambda s: (s.passage_index, s.position))
    lines = []
    for sentence in chosen:
        text = sentence.text if sentence.text[-1] in ".!?:" else sentence.text + "."
        lines.append(f"{text[:-1]} [{sentence.passage_index + 1}]{text[-1]}")
    return intro + "\n" + "\n".join(f"• {line}" for line in lines)
