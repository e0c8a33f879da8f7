"""What a heading looks like in formats without heading markup (plain text, PDF): numbered, in capitals or in
Title Case, short and without closing punctuation."""

from __future__ import annotations

import re

NUMBERED = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*)\.?\s+(\S.*)$")
END_PUNCT = tuple(".,;:!?")


def number_depth(number: str) -> int:
    return number.count(".") + 1


def is_caps_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return (len(letters) >= 2 and line.upper() == line and len(line) <= 60 and len(line.split()) <= 8
            and not line.endswith(END_PUNCT))


_SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "of", "on", "or", "per",
                "the", "to", "via", "with", "vs", "nor", "over", "under", "upon", "within", "without", "after",
                "before", "during", "about", "than"}


def title_case(text: str) -> bool:
    words = re.findall(r"[^\W\d_][\w'’&-]*", text)
    if not words or not words[0][0].isupper():
        return False
    return all(w[0].isupper() for w in words if w.lower() not in _SMALL_WORDS)
