"""Turn a follow-up ("and for part-timers?") into a standalone question, using earlier turns."""

from __future__ import annotations

import logging
import re

from bot.prompt import rewrite_messages

log = logging.getLogger(__name__)

_LEADS = re.compile(
    r"^(and|also|but|what about|how about|what if|same for|and if|or|so|then|does (that|it|this)|is (that|it|this)|"
    r"can (i|they|we) (still|also)|for)\b",
    re.I,
)
_REFERS = re.compile(r"\b(it|that|this|those|these|they|them|there|one|ones)\b", re.I)


def looks_like_follow_up(question: str) -> bool:
    words = re.findall(r"\w+", question)
    if not words:
        return False
    return bool(_LEADS.match(question.strip())) or len(words) <= 4 or (len(words) <= 8 and bool(_REFERS.search(question)))


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
