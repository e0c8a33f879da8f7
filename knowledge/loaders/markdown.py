"""Markdown: ATX and setext headings, FAQ question lines, lists, tables, code fences; front matter's title."""

from __future__ import annotations

import re

from knowledge.loaders.decoding import decode_text
from knowledge.loaders.sections import (Block, Paragraphs, Section, build_sections, clean_inline, clean_lines,
                                       single_h1_title)

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# An FAQ question set apart as a line of its own: "**Can I expense a desk?**" or "Q: Can I expense a desk?".
# It is a section of its own (one level below the current heading), so its answer is cited under it.
_FAQ_QUESTION = re.compile(r"^(?:\*\*|__)(?P<bold>[^*_]{3,200}\?)(?:\*\*|__)$|^Q(?:uestion)?\s*[:.]\s*(?P<q>.{3,200}\?)$")
_THEMATIC = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_MD_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+")
_QUOTE = re.compile(r"^ {0,3}>[ ]?")

_MD_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image → alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url) → text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # [text][ref] → text
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # autolink
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>"), " "),  # inline html tags
    (re.compile(r"\*\*|~~|`"), ""),
    (re.compile(r"(?<!\w)__|__(?!\w)"), ""),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])"), r"\1"),  # backslash escapes
]


def _md_inline(text: str) -> str:
    for pattern, repl in _MD_INLINE:
        text = pattern.sub(repl, text)
    return text


def load_markdown(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    lines = decode_text(data, filename).split("\n")
    front_title, lines = _front_matter(lines)
    blocks: list[Block] = []
    para = Paragraphs()

    def flush() -> None:
        text = para.take()
        if text:
            blocks.append(Block("text", text))

    i = 0
    in_comment = False
    outline_level = 1  # of the last real heading: FAQ questions nest one below it
    while i < len(lines):
        raw = lines[i]
        i += 1
        if in_comment:  # multi-line html comment
            in_comment = "-->" not in raw
            continue
        if raw.lstrip().startswith("<!--"):
            in_comment = "-->" not in raw
            continue
        fence = _FENCE.match(raw)
        if fence:  # code is content, but '#' lines inside it are not headings
            flush()
            marker = fence.group(1)
            code: list[str] = []
            while i < len(lines) and not lines[i].strip().startswith(marker[0] * len(marker)):
                code.append(lines[i])
                i += 1
            i += 1  # closing fence
            text = clean_lines("\n".join(code))
            if text:
                blocks.append(Block("text", text))
            continue
        line = _QUOTE.sub("", raw)
        while _QUOTE.match(line):
            line = _QUOTE.sub("", line)
        if not line.strip():
            flush()
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            heading = clean_inline(_md_inline(atx.group(2) or ""))
            if heading:
                blocks.append(Block("heading", heading, level=len(atx.group(1))))
                outline_level = len(atx.group(1))
            continue
        setext = _SETEXT.match(line)
        if setext and para.only_prose_line() is not None and (setext.group(1)[0] == "=" or len(setext.group(1)) >= 2):
            heading = clean_inline(_md_inline(para.only_prose_line() or ""))
            para.entries = []
            if heading:
                blocks.append(Block("heading", heading, level=1 if setext.group(1)[0] == "=" else 2))
                outline_level = 1 if setext.group(1)[0] == "=" else 2
            continue
        if _THEMATIC.match(line) or _REF_DEF.match(line):
            flush()
            continue
        item = _MD_ITEM.match(line)
        if item:
            marker = item.group(2)
            bullet = "- " if marker in "-*+" else marker + " "
            para.line("item", bullet + _md_inline(item.group(3)))
            continue
        stripped = line.strip()
        if stripped.startswith("|") or (stripped.count("|") >= 2 and para.entries and para.entries[-1][0] == "row"):
            if not _TABLE_SEP.match(stripped):
                cells = [clean_inline(_md_inline(c)) for c in stripped.strip("|").split("|")]
                para.line("row", " | ".join(c for c in cells if c))
            continue
        if _TABLE_SEP.match(stripped) and "|" in stripped:
            continue
        if line.startswith((" ", "\t")) and para.continue_item(_md_inline(stripped)):
            continue
        faq = _FAQ_QUESTION.match(stripped) if not para.entries else None
        if faq:
            flush()
            blocks.append(Block("heading", clean_inline(_md_inline(faq.group("bold") or faq.group("q"))),
                                 level=min(outline_level + 1, 6)))
            continue
        para.prose(_md_inline(stripped))
    flush()

    h1 = single_h1_title(blocks)
    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return first_h1 or front_title, build_sections(blocks, skip_heading=h1)


def _front_matter(lines: list[str]) -> tuple[str | None, list[str]]:
    """YAML front matter is metadata, not text; its `title:` is a fallback title."""
    if not lines or lines[0].strip() != "---":
        return None, lines
    for end in range(1, min(len(lines), 60)):
        if lines[end].strip() in ("---", "..."):
            title = None
            for meta in lines[1:end]:
                m = re.match(r"^title:\s*(.+)$", meta.strip(), re.I)
                if m:
                    title = m.group(1).strip().strip("'\"")
            return title, lines[end + 1:]
    return None, lines
