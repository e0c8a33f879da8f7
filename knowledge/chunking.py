"""Split loaded documents into passages for retrieval.

A chunk stays inside one section (and one PDF page), so its heading path and page are exact citations. Inside a
section we pack whole paragraphs, then whole sentences, and repeat a few trailing sentences at the start of the
next chunk so a fact that straddles the cut can still be found with its context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.loaders import LoadedDocument
from knowledge.schema import SECTION_SEPARATOR


@dataclass(frozen=True)
class ChunkDraft:
    position: int  # 0-based order in the document
    section_path: str  # " › ".join(section.path)
    page: int | None
    text: str


# Lower-cased, without the final dot. A period after these does not end a sentence.
_ABBREVIATIONS = {
    "e.g", "i.e", "eg", "ie", "etc", "cf", "viz", "vs", "v", "al", "approx", "appx", "ca", "incl", "excl", "resp",
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "rev", "hon", "gen", "capt", "col", "lt", "sgt", "gov",
    "no", "nos", "nr", "fig", "figs", "sec", "sect", "art", "para", "ch", "vol", "p", "pp", "ref", "refs", "ext",
    "tel", "dept", "est", "inc", "ltd", "co", "corp", "bros", "a.m", "p.m", "u.s", "u.k", "e.u", "ph.d",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri",
}
# End punctuation, optional closing quotes/brackets, then whitespace: a candidate sentence boundary.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
# A line that starts a unit of its own: a bullet, a numbered/lettered item, or a table row.
_ITEM_LINE = re.compile(r"^\s*([-*+•·▪◦●–]|\d{1,3}[.)]|[a-z][.)])\s+\S")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class _Unit:
    text: str
    sep: str  # what joins it to the previous unit: " ", "\n" or "\n\n"


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, in order. Bullets and table rows are sentences of their own; abbreviations
    ("e.g.", "Dr."), decimals ("2.5") and list numbers ("1." at a line start) do not end a sentence."""
    return [u.text for u in _units(text)]


def chunk_document(doc: LoadedDocument, max_chars: int = 1200, overlap_chars: int = 200) -> list[ChunkDraft]:
    if max_chars < 50:
        raise ValueError("max_chars must be at least 50")
    if not 0 <= overlap_chars <= max_chars // 2:  # more overlap than that would mostly repeat text
        raise ValueError("overlap_chars must be between 0 and half of max_chars")
    drafts: list[ChunkDraft] = []
    for section in doc.sections:
        path = SECTION_SEPARATOR.join(section.path)
        for text in _pack(_units(section.text, max_chars), max_chars, overlap_chars):
            if _LETTER.search(text):  # a chunk of page numbers or rules helps nobody
                drafts.append(ChunkDraft(position=len(drafts), section_path=path, page=section.page, text=text))
    return drafts


# ---------------------------------------------------------------------------------------------------------


def _units(text: str, max_chars: int | None = None) -> list[_Unit]:
    """Sentences with the separator that preceded them; a sentence over max_chars is cut at word boundaries."""
    units: list[_Unit] = []
    for para_index, paragraph in enumerate(p for p in re.split(r"\n\s*\n", text) if p.strip()):
        for seg_index, (segment, newline) in enumerate(_segments(paragraph)):
            for sent_index, sentence in enumerate(_split_segment(segment)):
                if sent_index:
                    sep = " "
                elif seg_index:
                    sep = "\n" if newline else " "
                else:
                    sep = "\n\n" if para_index else ""
                pieces = _cut_long(sentence, max_chars) if max_chars else [sentence]
                units.append(_Unit(pieces[0], sep))
                units.extend(_Unit(piece, " ") for piece in pieces[1:])
    return units


def _segments(paragraph: str) -> list[tuple[str, bool]]:
    """Split a paragraph at list items and table rows; wrapped prose lines stay together. Returns each
    segment with whether it began on a new line of its own."""
    segments: list[tuple[str, bool]] = []
    current: list[str] = []
    prev_row = False
    for line in paragraph.split("\n"):
        if not line.strip():
            continue
        row = " | " in line
        if current and (_ITEM_LINE.match(line) or row or prev_row):
            segments.append(("\n".join(current), True))
            current = []
        current.append(line)
        prev_row = row
    if current:
        segments.append(("\n".join(current), True))
    return segments


def _split_segment(segment: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(segment):
        end = match.end()
        rest = segment[end:].lstrip()
        if not rest or rest[0].islower():
            continue  # "e.g. the", "approx. five": a lower-case word continues the sentence
        if match.group().startswith(".") and not match.group().startswith(".."):
            before = segment[start:match.start()]
            word = re.split(r"\s", before)[-1].lstrip("([{\"'“‘").lower() if before.strip() else ""
            if word in _ABBREVIATIONS:
                continue
            if len(word) == 1 and word.isalpha():
                continue  # an initial: "J. Smith"
            if word.isdigit() and not before[: len(before) - len(word)].strip():
                continue  # list numbering "1." at the line start
            if re.fullmatch(r"(?:[a-z]\.)+[a-z]", word):
                continue  # dotted abbreviations: "a.m.", "U.S."
        sentence = " ".join(segment[start:end].split())
        if sentence:
            sentences.append(sentence)
        start = end
    tail = " ".join(segment[start:].split())
    if tail:
        sentences.append(tail)
    return sentences


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    """The one exception to whole sentences: a sentence longer than a chunk is cut between words."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > max_chars:  # a monster token (a URL, a hash): hard cut
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _length(units: list[_Unit], start: int, end: int) -> int:
    return sum(len(u.text) + len(u.sep) for u in units[start:end]) - (len(units[start].sep) if end > start else 0)


def _join(units: list[_Unit], start: int, end: int) -> str:
    return "".join((u.sep if i else "") + u.text for i, u in enumerate(units[start:end]))


def _pack(units: list[_Unit], max_chars: int, overlap_chars: int) -> list[str]:
    chunks: list[str] = []
    start = new = 0  # the chunk is units[start:end]; units before `new` were already emitted (overlap)
    while new < len(units):
        # Too much overlap for the next unit to fit: shed overlap sentences from the front.
        while start < new and _length(units, start, new + 1) > max_chars:
            start += 1
        end = new + 1
        while end < len(units) and _length(units, start, end + 1) <= max_chars:
            end += 1
        if end < len(units):
            # Full: end at a paragraph boundary instead, if that keeps the chunk at least half full.
            for cut in range(end - 1, new, -1):
                if units[cut].sep == "\n\n" and _length(units, start, cut) >= max_chars // 2:
                    end = cut
                    break
        chunks.append(_join(units, start, end))
        if end >= len(units):
            break
        # The next chunk repeats whole trailing sentences of this one, up to overlap_chars.
        start, total = end, 0
        while start - 1 >= new and total + len(units[start - 1].text) + (1 if total else 0) <= overlap_chars:
            total += len(units[start - 1].text) + (1 if total else 0)
            start -= 1
        new = end
    return chunks
