"""The extractive answerer: the best sentences of the best passages, cited [n]. It never invents anything.

Used when no LLM is configured (the embedded default) and as the fallback when the LLM fails.

The retriever's top passage is the most reliable signal (it combines meaning and exact terms), so the answer
always opens with that passage's best sentence; up to two more sentences follow from any passage when they
match the question nearly as well. Sentence matching weighs each question word by how rare it is among the
retrieved passages, so "Juneteenth" counts for more than "office".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bot.textmatch import terms
from knowledge.chunking import split_sentences

# Part of the answer cache key: bump it when the way answers are extracted changes.
EXTRACTIVE_VERSION = "extractive-v4"
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


def _weights(wanted: set[str], passage_terms: list[set[str]]) -> dict[str, float]:
    """IDF of each question term among the retrieved passages (rarer there = more telling)."""
    n = max(len(passage_terms), 1)
    return {t: math.log(1 + n / (1 + sum(t in p for p in passage_terms))) + 0.1 for t in wanted}


def _candidates(question: str, passage_texts: list[str], focus: str | None) -> list[ExtractedSentence]:
    wanted = terms(question) | (terms(focus) if focus else set())
    focused = terms(focus) if focus else set()
    weights = _weights(wanted, [terms(p) for p in passage_texts])
    total = sum(weights.values()) or 1.0
    wants_number = bool(_QUANTITY_QUESTION.search(question))
    found = []
    for p_index, passage in enumerate(passage_texts):
        for position, sentence in enumerate(split_sentences(passage)):
            sentence = sentence.strip().lstrip("-•* ").strip()
            if len(sentence) < 12 or _INSTRUCTION.search(sentence):
                continue
            sentence_terms = terms(sentence)
            matched = wanted & sentence_terms
            score = sum(weights[t] * (2.0 if t in focused else 1.0) for t in matched) / total
            if wants_number and _HAS_NUMBER.search(sentence):
                score += 0.15
            score += 0.02 / (1 + position)  # earlier sentences of a passage tend to state the rule
            found.append(ExtractedSentence(p_index, position, sentence, score))
    return found


def extract_answer(question: str, passage_texts: list[str], intro: str = "Here's what our policies say:",
                   focus: str | None = None, documents: list[object] | None = None) -> str:
    """An answer made of the passages' own sentences, each followed by its source marker [n] (1-based).

    `focus` is the user's latest message when `question` was rewritten from a follow-up: its words count twice.
    `documents` names each passage's document, so extras from the lead's own document are easier to admit.
    """
    candidates = sorted(_candidates(question, passage_texts, focus), key=lambda s: -s.score)
    if not candidates:
        return ""
    lead = next((s for s in candidates if s.passage_index == 0), candidates[0])
    chosen = [lead]
    length = len(lead.text)
    for sentence in candidates:
        if len(chosen) >= MAX_SENTENCES:
            break
        if sentence is lead or length + len(sentence.text) > MAX_CHARS:
            continue
        # Extras must match nearly as well as the lead; from another document, at least as well.
        if sentence.passage_index == lead.passage_index:
            bar = lead.score * 0.8
        elif documents and documents[sentence.passage_index] == documents[lead.passage_index]:
            bar = lead.score * 0.9
        else:
            bar = lead.score
        if sentence.score <= 0 or sentence.score < bar:
            continue
        chosen.append(sentence)
        length += len(sentence.text)
    # Read in document order: by passage rank, then position within the passage.
    chosen.sort(key=lambda s: (s.passage_index, s.position))
    lines = []
    for sentence in chosen:
        text = sentence.text if sentence.text[-1] in ".!?:" else sentence.text + "."
        lines.append(f"{text[:-1]} [{sentence.passage_index + 1}]{text[-1]}")
    return intro + "\n" + "\n".join(f"• {line}" for line in lines)
