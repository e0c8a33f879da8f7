"""The extractive answerer: the best sentences of the best passages, cited [n]. It never invents anything.

Used when no LLM is configured (the embedded default) and as the fallback when the LLM fails.

How a sentence is chosen, and why:
- Question words count by how rare they are among the retrieved passages, so "Juneteenth" counts for more
  than "office"; words of the passage's section heading count too (a bullet under "Jury duty" is about jury
  duty even when it does not say so).
- The kind of fact asked for (a duration, an amount, a date or time, who) is read off the question; a
  sentence that holds that kind of fact scores higher, and the best one opens the answer: the reader sees the
  answer first, the context after.
- The answer opens with the top passage's best sentence: retrieval's ranking (meaning and exact terms) picks
  the right passage more often than word overlap does (measured: leading with the best-matching sentence of
  any passage lost 10 points of answer-key hits on the 18F handbook).
- A sentence that leans on its neighbours ("That said, …", "This applies …", "… the following:") is given the
  sentence it leans on, or the items it introduces; when those are not in the passage it is not used.
- Extras beyond the lead come from the lead's own section, or must match at least as well as the lead: nothing
  from unrelated sections.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bot.textmatch import terms
from knowledge.chunking import split_sentences

# Part of the answer cache key: bump it when the way answers are extracted changes.
EXTRACTIVE_VERSION = "extractive-v6"
MAX_SENTENCES = 3
MAX_CHARS = 700
FACT_BONUS = 0.25
DANGLING_PENALTY = 0.1

# Text that addresses the assistant instead of employees is never repeated as an answer.
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules?|prompt)\b|\b(system prompt|you are now|as an ai)\b",
    re.I,
)

_UNITS = r"(minutes?|hours?|days?|weeks?|months?|years?|business days?|workdays?|pay periods?)"
_NUMBER = r"(\d+(\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|half)"
# What each kind of question asks for, and what a sentence that answers it looks like.
_FACTS: tuple[tuple[str, re.Pattern, re.Pattern], ...] = (
    ("duration",
     re.compile(r"\bhow (long|many (days|weeks|months|hours|years)|much time)|\bhow soon\b|"
                r"\bhow far (in advance|ahead|before)\b|\buntil when\b|\blead time\b|\bexpire", re.I),
     re.compile(rf"\b{_NUMBER}[\s-]+(\w+[\s-]+)?{_UNITS}\b", re.I)),
    ("amount",
     re.compile(r"\bhow much\b|\bhow many\b|\bwhat (percent|percentage|share)\b|\b(cost|price|rate|limit|cap|"
                r"maximum|max|minimum|budget|stipend|allowance|amount|reimburs\w*|per diem|salary|pay|paid)\b", re.I),
     re.compile(r"[$€£¥]\s?\d|\d+(\.\d+)?\s?(%|percent|dollars|usd|eur|gbp)\b|\b\d[\d,.]*\b", re.I)),
    ("date",
     re.compile(r"\bwhen\b|\bwhat (date|day|time)\b|\b(deadline|cutoff|cut-off|due)\b|\bby when\b|\bhow often\b",
                re.I),
     re.compile(r"\b(january|february|march|april|may|june|july|august|september|october|november|december|"
                r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekly|monthly|annually|yearly|"
                r"quarterly|daily|every|each|before|after|within|by the|deadline|\d{1,2}(:\d\d)?\s?(am|pm)|\d{1,2}:\d\d|"
                r"\d{4})\b", re.I)),
    ("who",
     re.compile(r"^\s*(who|whom)\b|\bwho (do|should|can|will|approves|decides|is)\b|\bcontact\b|\breach out\b",
                re.I),
     re.compile(r"@|#[\w-]+|\b(team|manager|supervisor|lead|director|officer|office|department|hr|people ops|"
                r"coordinator|administrator|admin|contact|email|channel|desk|specialist|approv\w*)\b", re.I)),
)

# A connective that only marks the turn of the argument: the sentence stands alone without it.
_CONNECTIVE = re.compile(
    r"^(that said|however|but|also|in addition|additionally|furthermore|moreover|still|even so|again|note that|"
    r"please note|importantly)\s*,?\s+",
    re.I,
)
# A sentence that leans on the one before it...
_LEANS_BACK = re.compile(
    r"^(this|these|those|that|it|they|such|otherwise|as a result|therefore|thus|in that case|in this case|then|"
    r"instead|similarly|likewise|in both cases|either way)\b",
    re.I,
)
# ...or on what follows it.
_LEANS_FORWARD = re.compile(r"(:\s*$|\b(below|the following|as follows)\b)", re.I)
_ITEM = re.compile(r"^\s*([-*+•·▪◦●–]|\d{1,3}[.)])\s+")


@dataclass(frozen=True)
class ExtractedSentence:
    passage_index: int  # 0-based into the passages given
    position: int  # order inside the passage
    text: str  # the sentence as shown, with any context it needs
    score: float


def asked_facts(question: str) -> list[tuple[str, re.Pattern]]:
    """The kinds of fact a question asks for, with what a sentence holding one looks like."""
    return [(name, answer) for name, asks, answer in _FACTS if asks.search(question)]


def _weights(wanted: set[str], passage_terms: list[set[str]]) -> dict[str, float]:
    """IDF of each question term among the retrieved passages (rarer there = more telling)."""
    n = max(len(passage_terms), 1)
    return {t: math.log(1 + n / (1 + sum(t in p for p in passage_terms))) + 0.1 for t in wanted}


def _clean(sentence: str) -> str:
    return _ITEM.sub("", sentence.strip()).strip()


def _with_context(sentences: list[str], position: int) -> str | None:
    """The sentence at `position` as it can stand alone: without a bare connective, with the sentence it leans
    on, or with the items it introduces. None when it leans on something the passage does not hold."""
    sentence = _clean(sentences[position])
    if _ITEM.match(sentences[position]):
        # A list item reads as an answer only with the sentence that introduces the list ("… are paid: X").
        intro = next((i for i in range(position - 1, -1, -1) if not _ITEM.match(sentences[i])), None)
        if intro is not None and sentences[intro].rstrip().endswith(":"):
            return f"{_clean(sentences[intro])} {sentence}"
        return sentence
    stripped = _CONNECTIVE.sub("", sentence)
    if stripped != sentence and stripped:
        sentence = stripped[0].upper() + stripped[1:]
    if _LEANS_FORWARD.search(sentence):
        items = []
        for following in sentences[position + 1:position + 4]:
            if not _ITEM.match(following):
                break
            items.append(_clean(following).rstrip(".;,"))
        if not items:
            return None
        return f"{sentence.rstrip(':').rstrip()}: {'; '.join(items)}."
    if _LEANS_BACK.match(sentence):
        if position == 0 or _ITEM.match(sentences[position - 1]):
            return None  # the antecedent is outside the passage, or one item of a list: nothing to lean on
        previous = _clean(sentences[position - 1])
        if _LEANS_BACK.match(previous) or _LEANS_FORWARD.search(previous) or len(previous) < 12:
            return None
        return f"{previous.rstrip()} {sentence}" if previous[-1:] in ".!?" else f"{previous.rstrip()}. {sentence}"
    return sentence


def _candidates(question: str, passage_texts: list[str], sections: list[str], focus: str | None
                ) -> list[ExtractedSentence]:
    wanted = terms(question) | (terms(focus) if focus else set())
    focused = terms(focus) if focus else set()
    weights = _weights(wanted, [terms(p) | terms(s) for p, s in zip(passage_texts, sections)])
    total = sum(weights.values()) or 1.0
    facts = asked_facts(question)
    found = []
    for p_index, passage in enumerate(passage_texts):
        heading_terms = terms(sections[p_index]) if p_index < len(sections) else set()
        sentences = split_sentences(passage)
        for position, raw in enumerate(sentences):
            sentence = _clean(raw)
            if len(sentence) < 12 or _INSTRUCTION.search(sentence):
                continue
            shown = _with_context(sentences, position)
            if shown is None or _INSTRUCTION.search(shown):
                continue
            sentence_terms = terms(sentence)
            # Heading words count half: they place the sentence, the sentence itself must carry the answer.
            score = sum(weights[t] * (2.0 if t in focused else 1.0) *
                        (1.0 if t in sentence_terms else 0.5 if t in heading_terms else 0.0)
                        for t in wanted) / total
            if facts and any(pattern.search(sentence) for _, pattern in facts):
                score += FACT_BONUS
            if shown != sentence:
                score -= DANGLING_PENALTY  # usable, but a sentence that stands alone is better
            score += 0.02 / (1 + position)  # earlier sentences of a passage tend to state the rule
            found.append(ExtractedSentence(p_index, position, shown, score))
    return found


INTRO = "Here's what our policies say:"
CLOSE_CALL_INTRO = "I'm not sure our policies cover exactly this. The closest I found:"


def extract_answer(question: str, passage_texts: list[str], intro: str = INTRO,
                   focus: str | None = None, documents: list[object] | None = None,
                   sections: list[str] | None = None) -> str:
    """An answer made of the passages' own sentences, each followed by its source marker [n] (1-based).

    `focus` is the user's latest message when `question` was rewritten from a follow-up: its words count twice.
    `documents` and `sections` name each passage's document and section path: extras from the lead's own
    section are easier to admit, extras from elsewhere must match at least as well as the lead.
    """
    sections = list(sections or [""] * len(passage_texts))
    candidates = sorted(_candidates(question, passage_texts, sections, focus), key=lambda s: -s.score)
    if not candidates:
        return ""
    # The top passage is retrieval's best call (meaning and exact terms together): the answer opens with it.
    lead = next((s for s in candidates if s.passage_index == 0), candidates[0])
    chosen = [lead]
    length = len(lead.text)
    for sentence in candidates:
        if len(chosen) >= MAX_SENTENCES:
            break
        if sentence is lead or length + len(sentence.text) > MAX_CHARS or sentence.score <= 0:
            continue
        if any(sentence.text in c.text or c.text in sentence.text for c in chosen):
            continue  # overlapping chunks repeat sentences; a context sentence may already be shown
        # Extras must match nearly as well as the lead; from another section or document, at least as well.
        if sentence.passage_index == lead.passage_index:
            bar = lead.score * 0.8
        elif documents and documents[sentence.passage_index] == documents[lead.passage_index]:
            bar = lead.score * 0.9
        else:
            bar = lead.score
        if sentence.score < bar:
            continue
        chosen.append(sentence)
        length += len(sentence.text)
    # The lead first (it holds the fact asked for); the rest in reading order.
    rest = sorted(chosen[1:], key=lambda s: (s.passage_index, s.position))
    lines = []
    for sentence in [lead, *rest]:
        text = sentence.text if sentence.text[-1] in ".!?:" else sentence.text + "."
        lines.append(f"{text[:-1]} [{sentence.passage_index + 1}]{text[-1]}")
    return intro + "\n" + "\n".join(f"• {line}" for line in lines)
