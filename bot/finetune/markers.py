"""Citation markers in training targets: a stored answer numbers its markers in citation order, the prompt
numbers sources in retrieval order; these map one onto the other."""

from __future__ import annotations

import re

from bot.citations import MARKER, marker_numbers


def remap_markers(answer: str, mapping: dict[int, int]) -> tuple[str, int]:
    """Rewrite [n] markers through `mapping` (old number -> new number); unmapped ones are removed.
    Returns the text and how many markers were kept."""
    kept_total = 0

    def replace(match: re.Match) -> str:
        nonlocal kept_total
        kept: list[int] = []
        for number in marker_numbers(match.group(1)):
            if number in mapping and mapping[number] not in kept:
                kept.append(mapping[number])
        kept_total += len(kept)
        return "".join(f"[{n}]" for n in kept)

    new = MARKER.sub(replace, answer)
    new = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", new)).strip()
    return new, kept_total


def citation_positions(citations: list[dict], retrieved: list[dict]) -> dict[int, int]:
    """Displayed marker (citation order) -> 1-based position of that passage in the prompt (retrieval order)."""
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for citation in citations:
        snippet = (citation.get("snippet") or "").rstrip("…").strip()
        for index, passage in enumerate(retrieved):
            if index in used:
                continue
            if citation.get("document_id") is not None and passage.get("document_id") != citation.get("document_id"):
                continue
            if (passage.get("section") or "") != (citation.get("section") or ""):
                continue
            if passage.get("page") != citation.get("page"):
                continue
            if snippet and not (passage.get("text") or "").startswith(snippet):
                continue
            mapping[int(citation["marker"])] = index + 1
            used.add(index)
            break
    return mapping
