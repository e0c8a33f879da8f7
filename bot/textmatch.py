"""Light lexical matching in Python (no database round trip): words, stop words and a crude stemmer."""

from __future__ import annotations

import re

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself get got getting need want wanna please tell know let lets us im ive id
    also much many""".split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def stem(word: str) -> str:
    """Strip a few English suffixes: enough to match 'days'/'day', 'expensing'/'expense'."""
    for suffix in ("ies", "ing", "ers", "er", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 4 else word


def terms(text: str) -> set[str]:
    """Content terms of a text: lower-cased, stop words dropped, stemmed."""
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())}
