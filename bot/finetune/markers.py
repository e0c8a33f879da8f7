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


# A correction's sentence is supported by the passages its markers cite when every figure in it (25, 60 EUR, 10:00)
# is in them and at least this share of its content words is. An admin writing from memory may cite [1] while
# the passage that says it was never retrieved: the model would learn to cite sources for claims they do not make.
MIN_SUPPORTED_SHARE = 1 / 3
_FIGURE = re.compile(r"\d+(?:[.,:]\d+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SOURCE_BLOCK = re.compile(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', re.S)


def prompt_sources(user_message: str) -> dict[int, str]:
    """Source number -> passage text, read back from a prompt's user message."""
    return {int(n): body for n, body in _SOURCE_BLOCK.findall(user_message)}


def unsupported_claims(answer: str, sources: dict[int, str]) -> list[str]:
    """The sentences of `answer` (markers in the prompt's numbering) that the sources they cite do not support."""
    from bot.textmatch import terms

    flagged = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE.split(answer))):
        numbers = [n for group in MARKER.findall(sentence) for n in marker_numbers(group)]
        if not numbers:
            continue
        claim = MARKER.sub(" ", sentence)
        cited = " ".join(sources.get(n, "") for n in numbers)
        words = terms(claim) - {f for f in _FIGURE.findall(claim)}
        shared = len(words & terms(cited)) / len(words) if words else 1.0
        figures = set(_FIGURE.findall(claim)) - set(_FIGURE.findall(cited))
        if any(n not in sources for n in numbers) or figures or shared < MIN_SUPPORTED_SHARE:
            flagged.append(sentence)
    return flagged
