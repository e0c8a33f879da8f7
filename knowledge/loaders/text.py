"""Plain text: headings guessed from underlines, capitals and numbering; a short first line is the title."""

from __future__ import annotations

import re

from knowledge.loaders.decoding import decode_text
from knowledge.loaders.headings import END_PUNCT, NUMBERED, is_caps_heading, number_depth, title_case
from knowledge.loaders.sections import Block, Paragraphs, Section, build_sections, clean_inline

_TXT_ITEM = re.compile(r"^\s*([-*•·▪◦●–]|\d{1,3}[.)]|[a-z][.)])\s+(.*)$")
_UNDERLINE = re.compile(r"^\s*(={3,}|-{3,})\s*$")


def _numbered_heading(line: str) -> tuple[int, str] | None:
    m = NUMBERED.match(line)
    if not m:
        return None
    rest = m.group(2)
    if len(line) > 60 or len(rest.split()) > 8 or line.endswith(END_PUNCT) or not rest[0].isupper():
        return None
    return number_depth(m.group(1)), line


def load_text(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    lines = [line.strip() for line in decode_text(data, filename).split("\n")]
    blocks: list[Block] = []
    para = Paragraphs()
    title: str | None = None

    def flush() -> None:
        text = para.take()
        if text:
            blocks.append(Block("text", text))

    after_heading = -1  # index of the line just after the last heading (or title)

    def standalone(i: int) -> bool:  # first line of its paragraph
        return i == 0 or not lines[i - 1] or i == after_heading

    first = next((i for i, line in enumerate(lines) if line), None)
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not line:
            flush()
            i += 1
            continue
        heading: tuple[int, str] | None = None
        step = 1
        if _UNDERLINE.match(nxt) and len(line) <= 80 and not para.entries and not _UNDERLINE.match(line):
            heading, step = (1 if nxt.lstrip()[0] == "=" else 2, line), 2
        elif standalone(i) and is_caps_heading(line):
            heading = (1, line)
        elif standalone(i) and (num := _numbered_heading(line)):
            # "1. Bring your ID" / "2. Sign in" is a list, not two headings: the next line must not be a
            # numbered line of the same depth.
            nm = NUMBERED.match(nxt)
            if not (nm and number_depth(nm.group(1)) == num[0]):
                heading = num
        if heading is None and i == first and title is None:
            # A short first line standing alone reads as the document's title.
            if (not nxt and len(line) <= 80 and not line.endswith(END_PUNCT) and title_case(line)
                    and not NUMBERED.match(line)):
                heading = (1, line)
        if heading:
            flush()
            if i == first and title is None and not NUMBERED.match(line):
                title = heading[1]  # the title is not part of any section path
            else:
                blocks.append(Block("heading", clean_inline(heading[1]), level=heading[0]))
            i += step
            after_heading = i
            continue
        if _UNDERLINE.match(line):  # a stray rule
            flush()
        elif item := _TXT_ITEM.match(line):
            marker = item.group(1)
            para.line("item", ("- " if not marker[0].isalnum() else marker + " ") + item.group(2))
        else:
            para.prose(line)
        i += 1
    flush()
    return title, build_sections(blocks)
