"""What every format parser produces and shares: headings and paragraphs as Blocks, folded into Sections.

Also the whitespace cleaning and the paragraph buffer (prose re-flows, list items and table rows stay lines)
that several formats use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    path: tuple[str, ...]  # heading path, e.g. ("Paid Time Off", "Sabbatical"); () before any heading
    text: str  # body text, paragraphs separated by "\n\n"; headings are not repeated here
    page: int | None = None  # 1-based page for PDF, else None


@dataclass
class LoadedDocument:
    title: str
    doc_type: str
    sections: list[Section]
    content_hash: str  # sha256 hex of the raw bytes


@dataclass
class Block:
    kind: str  # "heading" or "text"
    text: str
    level: int = 0
    page: int | None = None


def build_sections(blocks: list[Block], skip_heading: str | None = None) -> list[Section]:
    """Fold a stream of headings and paragraphs into sections. A deeper heading nests under the last shallower
    one; a same-or-shallower heading replaces. `skip_heading` is the single H1 used as the title: it must not
    prefix every path."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    page: int | None = None

    def flush() -> None:
        text = "\n\n".join(p for p in paragraphs if p.strip())
        if text:
            sections.append(Section(path=tuple(t for _, t in stack), text=text, page=page))
        paragraphs.clear()

    for block in blocks:
        if block.kind == "heading":
            flush()
            if skip_heading is not None and block.level == 1 and same_text(block.text, skip_heading):
                stack.clear()
                continue
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, block.text))
        else:
            if block.page != page:
                flush()
                page = block.page
            paragraphs.append(block.text)
    flush()
    return sections


def same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def single_h1_title(blocks: list[Block]) -> str | None:
    """The title heading to leave out of paths: only when the document has exactly one H1."""
    h1 = [b.text for b in blocks if b.kind == "heading" and b.level == 1]
    return h1[0] if len(h1) == 1 else None


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def clean_inline(text: str) -> str:
    """One line, single spaces: for headings, table cells and prose paragraphs."""
    return " ".join(text.translate(_ZERO_WIDTH).split())


def clean_lines(text: str) -> str:
    """Keep line structure (lists, tables, code) but normalise spaces within lines and drop blank lines."""
    lines = (" ".join(line.translate(_ZERO_WIDTH).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# Paragraph buffer shared by markdown and plain text: prose lines re-flow, list items and table rows stay lines.


class Paragraphs:
    def __init__(self) -> None:
        self.entries: list[list[str]] = []  # [kind, text]

    def prose(self, line: str) -> None:
        if self.entries and self.entries[-1][0] in ("prose", "item"):
            self.entries[-1][1] += " " + line  # a wrapped line, or a list item's lazy continuation
        else:
            self.entries.append(["prose", line])

    def line(self, kind: str, text: str) -> None:
        self.entries.append([kind, text])

    def continue_item(self, line: str) -> bool:
        if self.entries and self.entries[-1][0] == "item":
            self.entries[-1][1] += " " + line
            return True
        return False

    def only_prose_line(self) -> str | None:
        if len(self.entries) == 1 and self.entries[0][0] == "prose" and self.entries[0][1].count(" ") < 15:
            return self.entries[0][1]
        return None

    def take(self) -> str:
        text = "\n".join(clean_inline(t) for _, t in self.entries if t.strip())
        self.entries = []
        return text
