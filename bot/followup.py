"""Turn a follow-up ("and for part-timers?") into a standalone question, using earlier turns."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from bot.prompt import rewrite_messages
from bot.textmatch import terms

log = logging.getLogger(__name__)

# A message that opens with a connective continues the previous one ("and for part-timers?").
_LEADS = re.compile(
    r"^(and|also|but|what about|how about|what if|same for|and if|or|so|then|does (that|it|this)|is (that|it|this)|"
    r"can (i|they|we) (still|also)|for|plus|even|only|except)\b",
    re.I,
)
# Words that point back at something said before. "there" only when it is not the existential "is there".
_REFERS = re.compile(r"\b(it|its|that|this|those|these|they|them|their|one|ones|the same)\b", re.I)
_REFERS_THERE = re.compile(r"(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bwere )\bthere\b", re.I)
_MAX_REFERRING_WORDS = 8
# Predicates that ask about a subject without naming one ("how long?", "is it paid?").
_NO_SUBJECT = terms("long often soon far old early late paid unpaid allowed ok okay required mandatory possible "
                    "eligible free true apply applies count counts cover covered work works happen instead")


@lru_cache(maxsize=4096)  # a pure function of the text, asked of every question: the same ones come back all day
def looks_like_follow_up(question: str) -> bool:
    """Whether the message needs the earlier turns to be understood.

    A short message that names its own subject ("Is there a company gym?", "Who approves travel?") stands on
    its own and is never merged: shortness alone says nothing. A follow-up opens with a connective, points back
    ("is it paid?"), or has no subject at all ("how long?").
    """
    text = question.strip()
    words = re.findall(r"\w+", text)
    if not words:
        return False
    if _LEADS.match(text):
        return True
    subject = terms(_REFERS.sub(" ", text)) - _NO_SUBJECT
    if not subject:
        return True
    points_back = bool(_REFERS.search(text) or _REFERS_THERE.search(text))
    return points_back and len(words) <= _MAX_REFERRING_WORDS and len(subject) <= 2


def heuristic_rewrite(previous_question: str, follow_up: str) -> str:
    """Without an LLM: the previous standalone question gives the follow-up its subject."""
    return f"{previous_question.rstrip()} {follow_up.strip()}"


# How a standalone question opens when it does not end with "?" ("Tell me ...", "Explain ..." are not questions
# a rewrite should produce: the instruction asks for "the question only").
_ASKS = re.compile(r"^(what|how|when|where|who|whom|whose|which|why|can|could|do|does|did|is|are|was|were|will|would|"
                   r"should|shall|may|might|must|have|has|am)\b", re.I)
_SHINGLE = 5  # words
MAX_REWRITE_CHARS = 600


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def is_question(text: str) -> bool:
    text = text.strip()
    return bool(text) and "\n" not in text and (text.endswith("?") or bool(_ASKS.match(text)))


def copies(text: str, answer: str) -> bool:
    """Whether `text` is (mostly) a copy of `answer`: half of its 5-word runs, or all of a shorter text, occur in it."""
    words, source = _words(text), _words(answer)
    if not words or not source:
        return False
    if len(words) < _SHINGLE:
        return " ".join(words) in " ".join(source) and len(words) >= 3
    runs = {tuple(words[i:i + _SHINGLE]) for i in range(len(words) - _SHINGLE + 1)}
    have = {tuple(source[i:i + _SHINGLE]) for i in range(len(source) - _SHINGLE + 1)}
    return len(runs & have) * 2 >= len(runs)


def acceptable(text: str, history: list[tuple[str, str]]) -> str | None:
    """Why a model's rewrite is discarded (None: it is used)."""
    if not text or len(text) >= MAX_REWRITE_CHARS:
        return "empty or too long"
    if not is_question(text):
        return "not a question"
    if any(copies(text, answer) for _, answer in history):
        return "repeats an earlier answer"
    return None


def rewrite(history: list[tuple[str, str]], follow_up: str, llm=None, model: str | None = None) -> str:
    """history: (standalone question, answer) pairs, oldest first. Returns the standalone question.

    llm: the core's LLM (an LLMProtocol) and `model` the one that will answer (the active model after a promotion).
    Its rewrite is used only when it is one question that does not repeat an earlier answer; otherwise, or
    without an LLM, the heuristic merge is."""
    if not history or not looks_like_follow_up(follow_up):
        return follow_up
    recent = history[-3:]
    if llm is not None and model:
        try:
            generation = llm.complete(rewrite_messages(recent, follow_up), model, max_tokens=120)
            text = generation.text.strip().strip('"').strip()
            problem = acceptable(text, recent)
            if problem is None:
                return text
            log.warning("follow-up rewrite discarded (%s), using the heuristic", problem)
        except Exception as err:  # a failed rewrite must not fail the answer
            log.warning("follow-up rewrite failed, using the heuristic: %s", type(err).__name__)
    return heuristic_rewrite(history[-1][0], follow_up)
