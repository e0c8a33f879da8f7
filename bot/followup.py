"""Turn a follow-up ("and for part-timers?") into a standalone question, using earlier turns."""

from __future__ import annotations

import logging
import re

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


def rewrite(history: list[tuple[str, str]], follow_up: str, client=None, model: str | None = None) -> str:
    """history: (standalone question, answer) pairs, oldest first. Returns the standalone question."""
    if not history or not looks_like_follow_up(follow_up):
        return follow_up
    if client is not None and model:
        try:
            response = client.chat.completions.create(
                model=model, messages=rewrite_messages(history[-3:], follow_up), temperature=0, max_tokens=120
            )
            text = (response.choices[0].message.content or "").strip().strip('"')
            if text and len(text) < 600:
                return text
        except Exception as err:  # a failed rewrite must not fail the answer
            log.warning("follow-up rewrite failed, using the heuristic: %s", type(err).__name__)
    return heuristic_rewrite(history[-1][0], follow_up)
