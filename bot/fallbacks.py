"""Why a model's reply was not used, and the record of it.

`reply_problem` is the one check of a finished reply before its citations are looked at (the complete and the
streamed path share it); `Fallback` is what is stored on the interaction when the extractive answer replaces
the model's: the model that was asked, the reason, and its raw reply cut to REPLY_CHARS.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from bot import metrics

REPLY_CHARS = 2000  # enough to see what went wrong; a runaway reply is not stored whole
REASONS = ("no_citation", "truncated", "repetition", "timeout", "rate_limited", "server_error", "error", "busy",
           "empty", "breaker_open")
_SHINGLE = 6  # words
_REPEATS = 3  # the same 6-word run three times is a loop, not an answer in the brand voice


@dataclass(frozen=True)
class Fallback:
    model: str
    reason: str  # one of REASONS
    reply: str | None = None  # the model's raw reply, when there was one

    def columns(self) -> dict:
        """The interaction row's fallback columns."""
        return {"fallback_model": self.model, "fallback_reason": self.reason, "fallback_reply": bounded(self.reply)}


NO_FALLBACK = {"fallback_model": None, "fallback_reason": None, "fallback_reply": None}


def bounded(reply: str | None) -> str | None:
    if reply is None or len(reply) <= REPLY_CHARS:
        return reply
    return reply[: REPLY_CHARS - 1] + "…"


def observe(fallback: Fallback) -> None:
    metrics.llm_fallbacks.labels(fallback.reason).inc()


def repeats(text: str) -> bool:
    """Whether the reply loops: some run of 6 words occurs 3 or more times."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < _SHINGLE * _REPEATS:
        return False
    runs = Counter(tuple(words[i:i + _SHINGLE]) for i in range(len(words) - _SHINGLE + 1))
    return max(runs.values()) >= _REPEATS


def reply_problem(text: str, finish_reason: str | None) -> str | None:
    """A reason the reply cannot be used whatever its citations (cut off by max_tokens, or looping), else None."""
    if finish_reason == "length":
        return "truncated"
    if repeats(text):
        return "repetition"
    return None
