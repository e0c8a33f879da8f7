"""Inline citation markers: keep the valid ones, renumber them in order of appearance, list only those cited."""

from __future__ import annotations

import re
from dataclasses import dataclass

# [1], [2, 3], [1][2], [1-2] — what models actually write.
MARKER = re.compile(r"\[(\d+(?:\s*[,\-–]\s*\d+)*)\]")


@dataclass(frozen=True)
class Cited:
    text: str  # the answer with renumbered markers
    order: list[int]  # 0-based indexes into the sources list, in new marker order
    dropped: int  # markers that pointed to no source


def marker_numbers(group: str) -> list[int]:
    """The source numbers in one marker's inside: "2, 3" -> [2, 3]; "1-3" -> [1, 2, 3]."""
    numbers: list[int] = []
    for part in re.split(r"\s*,\s*", group):
        bounds = re.split(r"\s*[\-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            numbers.extend(range(low, high + 1) if 0 < high - low < 10 else [low, high])
        elif part.strip().isdigit():
            numbers.append(int(part))
    return numbers


def renumber(text: str, source_count: int) -> Cited:
    """Parse [n] markers against `source_count` sources (1-based in the text)."""
    order: list[int] = []
    dropped = 0

    def replace(match: re.Match) -> str:
        nonlocal dropped
        kept = []
        for number in marker_numbers(match.group(1)):
            if 1 <= number <= source_count:
                if number - 1 not in order:
                    order.append(number - 1)
                new = order.index(number - 1) + 1
                if new not in kept:
                    kept.append(new)
            else:
                dropped += 1
        return "".join(f"[{n}]" for n in kept)

    new_text = MARKER.sub(replace, text)
    new_text = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", new_text)).strip()
    return Cited(text=new_text, order=order, dropped=dropped)


def has_citation(text: str) -> bool:
    return bool(MARKER.search(text))
