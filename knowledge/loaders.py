"""Turn uploaded files (Markdown, text, HTML, PDF, DOCX) into a title and heading-aware sections.

Every failure on bad input becomes a DocumentError whose message names the file, says what is wrong and what
to do, so adapters can show it to the uploader as-is. Library exceptions never escape.
"""

from __future__ import annotations

import hashlib
import string
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from knowledge import document_limits

SUPPORTED_TYPES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
_SUPPORTED_LIST = "pdf, docx, md, txt, html"
# Reasons that read as a predicate ("leave.pdf is 30 MB ...") follow the name directly; others get a colon.
_PREDICATE_STARTS = ("is ", "has ", "was ", "cannot ", "could not ", "does ", "looks ")


class DocumentError(ValueError):
    """Bad input. str(err) is a clear one-line message that names the file and the reason and says what to do."""

    def __init__(self, filename: str, reason: str):
        self.filename = filename
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        sep = " " if self.reason.startswith(_PREDICATE_STARTS) else ": "
        super().__init__(f"{filename}{sep}{self.reason}")


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


# ---------------------------------------------------------------------------------------------------------
# Entry points


def load_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedDocument:
    path = Path(path)
    _doc_type(path.name)  # fail on the type before touching the disk
    try:
        size = path.stat().st_size
        if size > max_bytes:  # checked before reading a huge file into memory
            raise DocumentError(path.name, _too_big(size, max_bytes))
        data = path.read_bytes()
    except OSError as err:
        raise DocumentError(path.name, f"cannot be read: {err.strerror or err}; check the path and permissions") from err
    return load_bytes(data, path.name, max_bytes=max_bytes)


def load_bytes(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedDocument:
    doc_type = _doc_type(filename)
    if len(data) > max_bytes:
        raise DocumentError(filename, _too_big(len(data), max_bytes))
    if not data.strip():
        raise DocumentError(filename, "is empty; upload a file that contains text")

    parser = {"markdown": _load_markdown, "text": _load_text, "html": _load_html,
              # Packed formats get the size limit: what they may unpack to is derived from it.
              "pdf": lambda d, f: _load_pdf(d, f, max_bytes), "docx": lambda d, f: _load_docx(d, f, max_bytes)
              }[doc_type]
    try:
        title, sections = parser(data, filename)
    except DocumentError:
        raise
    except document_limits.UnsafeDocument as exc:  # bombs and DTDs: refused before they cost memory
        raise DocumentError(filename, exc.reason) from exc
    except Exception as exc:  # a parser bug or a library surprise must still read as a clear upload error
        raise DocumentError(filename, f"could not be read as {doc_type}: {_short(exc)}; check the file and try again") from exc

    sections = [s for s in sections if s.text.strip()]
    if not sections:
        hint = ("it may be a scanned image; export it with a text layer or OCR it first" if doc_type == "pdf"
                else "check the file has real text content")
        raise DocumentError(filename, f"has no extractable text; {hint}")
    title = _clean_inline(title or "") or _humanize_stem(filename)
    if title.isupper() and len(title) > 4:  # "LEARNING POLICY" shouts in every citation
        title = string.capwords(title.lower())
    return LoadedDocument(title=title, doc_type=doc_type, sections=sections,
                          content_hash=hashlib.sha256(data).hexdigest())


def _doc_type(filename: str) -> str:
    ext = Path(filename).suffix.lower()
    if ext not in SUPPORTED_TYPES:
        shown = f"'{ext}'" if ext else "(no extension)"
        raise DocumentError(filename, f"unsupported file type {shown}; supported: {_SUPPORTED_LIST}")
    return SUPPORTED_TYPES[ext]


def _too_big(size: int, limit: int) -> str:
    return f"is {_mb(size)}, over the {_mb(limit)} limit; split it or compress it and try again"


def _mb(n: int) -> str:
    mb = n / (1024 * 1024)
    if mb >= 0.1:
        return f"{mb:.1f} MB".replace(".0 MB", " MB")
    return f"{mb:.4f} MB ({n:,} bytes)"  # tiny limits (tests, tight configs) stay readable


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _humanize_stem(filename: str) -> str:
    words = re.sub(r"[_\-.\s]+", " ", Path(filename).stem).split()
    return " ".join(w[:1].upper() + w[1:] for w in words) or filename


# ---------------------------------------------------------------------------------------------------------
# Shared: heading/text events → sections


@dataclass
class _Block:
    kind: str  # "heading" or "text"
    text: str
    level: int = 0
    page: int | None = None


def _build_sections(blocks: list[_Block], skip_heading: str | None = None) -> list[Section]:
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
            if skip_heading is not None and block.level == 1 and _same(block.text, skip_heading):
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


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _single_h1_title(blocks: list[_Block]) -> str | None:
    """The title heading to leave out of paths: only when the document has exactly one H1."""
    h1 = [b.text for b in blocks if b.kind == "heading" and b.level == 1]
    return h1[0] if len(h1) == 1 else None


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def _clean_inline(text: str) -> str:
    """One line, single spaces: for headings, table cells and prose paragraphs."""
    return " ".join(text.translate(_ZERO_WIDTH).split())


def _clean_lines(text: str) -> str:
    """Keep line structure (lists, tables, code) but normalise spaces within lines and drop blank lines."""
    lines = (" ".join(line.translate(_ZERO_WIDTH).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------------------------------------------------
# Text decoding (markdown, text, html)


def _decode(data: bytes, filename: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM, as Windows tools write it
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            text = None
    else:
        text = None
    if text is None:
        for encoding in ("utf-8", "utf-8-sig", "cp1252", "latin-1"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    text = (text or "").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    # latin-1 decodes anything, so binary input shows up as control characters rather than a decode error.
    control = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\t\f\v")
    if "\x00" in text or control > max(2, len(text) // 100):
        raise DocumentError(filename, "does not look like a text file (it contains binary data); "
                                      "save it as plain text (UTF-8) or upload it as PDF or DOCX")
    return text.replace("\f", "\n").replace("\v", "\n").replace("\t", " ").replace("\u00a0", " ")


# ---------------------------------------------------------------------------------------------------------
# Paragraph buffer shared by markdown and plain text: prose lines re-flow, list items and table rows stay lines.


class _Para:
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
        text = "\n".join(_clean_inline(t) for _, t in self.entries if t.strip())
        self.entries = []
        return text


# ---------------------------------------------------------------------------------------------------------
# Markdown

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


def _load_markdown(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    lines = _decode(data, filename).split("\n")
    front_title, lines = _front_matter(lines)
    blocks: list[_Block] = []
    para = _Para()

    def flush() -> None:
        text = para.take()
        if text:
            blocks.append(_Block("text", text))

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
            text = _clean_lines("\n".join(code))
            if text:
                blocks.append(_Block("text", text))
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
            heading = _clean_inline(_md_inline(atx.group(2) or ""))
            if heading:
                blocks.append(_Block("heading", heading, level=len(atx.group(1))))
                outline_level = len(atx.group(1))
            continue
        setext = _SETEXT.match(line)
        if setext and para.only_prose_line() is not None and (setext.group(1)[0] == "=" or len(setext.group(1)) >= 2):
            heading = _clean_inline(_md_inline(para.only_prose_line() or ""))
            para.entries = []
            if heading:
                blocks.append(_Block("heading", heading, level=1 if setext.group(1)[0] == "=" else 2))
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
                cells = [_clean_inline(_md_inline(c)) for c in stripped.strip("|").split("|")]
                para.line("row", " | ".join(c for c in cells if c))
            continue
        if _TABLE_SEP.match(stripped) and "|" in stripped:
            continue
        if line.startswith((" ", "\t")) and para.continue_item(_md_inline(stripped)):
            continue
        faq = _FAQ_QUESTION.match(stripped) if not para.entries else None
        if faq:
            flush()
            blocks.append(_Block("heading", _clean_inline(_md_inline(faq.group("bold") or faq.group("q"))),
                                 level=min(outline_level + 1, 6)))
            continue
        para.prose(_md_inline(stripped))
    flush()

    h1 = _single_h1_title(blocks)
    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return first_h1 or front_title, _build_sections(blocks, skip_heading=h1)


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


# ---------------------------------------------------------------------------------------------------------
# Plain text

_NUMBERED = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*)\.?\s+(\S.*)$")
_TXT_ITEM = re.compile(r"^\s*([-*•·▪◦●–]|\d{1,3}[.)]|[a-z][.)])\s+(.*)$")
_UNDERLINE = re.compile(r"^\s*(={3,}|-{3,})\s*$")
_END_PUNCT = tuple(".,;:!?")


def _number_depth(number: str) -> int:
    return number.count(".") + 1


def _is_caps_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return (len(letters) >= 2 and line.upper() == line and len(line) <= 60 and len(line.split()) <= 8
            and not line.endswith(_END_PUNCT))


def _numbered_heading(line: str) -> tuple[int, str] | None:
    m = _NUMBERED.match(line)
    if not m:
        return None
    rest = m.group(2)
    if len(line) > 60 or len(rest.split()) > 8 or line.endswith(_END_PUNCT) or not rest[0].isupper():
        return None
    return _number_depth(m.group(1)), line


def _load_text(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    lines = [line.strip() for line in _decode(data, filename).split("\n")]
    blocks: list[_Block] = []
    para = _Para()
    title: str | None = None

    def flush() -> None:
        text = para.take()
        if text:
            blocks.append(_Block("text", text))

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
        elif standalone(i) and _is_caps_heading(line):
            heading = (1, line)
        elif standalone(i) and (num := _numbered_heading(line)):
            # "1. Bring your ID" / "2. Sign in" is a list, not two headings: the next line must not be a
            # numbered line of the same depth.
            nm = _NUMBERED.match(nxt)
            if not (nm and _number_depth(nm.group(1)) == num[0]):
                heading = num
        if heading is None and i == first and title is None:
            # A short first line standing alone reads as the document's title.
            if (not nxt and len(line) <= 80 and not line.endswith(_END_PUNCT) and _title_case(line)
                    and not _NUMBERED.match(line)):
                heading = (1, line)
        if heading:
            flush()
            if i == first and title is None and not _NUMBERED.match(line):
                title = heading[1]  # the title is not part of any section path
            else:
                blocks.append(_Block("heading", _clean_inline(heading[1]), level=heading[0]))
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
    return title, _build_sections(blocks)


_SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "of", "on", "or", "per",
                "the", "to", "via", "with", "vs", "nor", "over", "under", "upon", "within", "without", "after",
                "before", "during", "about", "than"}


def _title_case(text: str) -> bool:
    words = re.findall(r"[^\W\d_][\w'’&-]*", text)
    if not words or not words[0][0].isupper():
        return False
    return all(w[0].isupper() for w in words if w.lower() not in _SMALL_WORDS)


# ---------------------------------------------------------------------------------------------------------
# HTML

_HTML_DROP = {"script", "style", "nav", "noscript", "template", "svg", "button", "select", "input", "textarea",
              "iframe", "object", "canvas", "head"}
_HTML_INLINE = {"a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q",
                "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "img", "font", "label",
                "wbr", "del", "ins", "strike", "tt", "big"}
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def _load_html(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, Tag

    soup = BeautifulSoup(_decode(data, filename), "html.parser")
    page_title = _clean_inline(soup.title.get_text(" ")) if soup.title else ""
    for tag in soup.find_all(["header", "footer"]):
        # Site chrome goes; an article's own header (often holding its h1) stays.
        if not tag.find_parent(["article", "main"]):
            tag.decompose()
    for tag in soup.find_all(list(_HTML_DROP)):
        tag.decompose()
    _drop_hidden_html(soup)

    blocks: list[_Block] = []

    def text_of(node: Tag) -> str:
        return _clean_inline(node.get_text(" "))

    def list_items(lst: Tag, out: list[str]) -> None:
        for li in lst.find_all("li", recursive=False):
            own: list[str] = []
            nested: list[Tag] = []
            for child in li.children:
                if isinstance(child, Tag) and child.name in ("ul", "ol"):
                    nested.append(child)
                elif isinstance(child, Tag):
                    own.append(child.get_text(" "))
                elif type(child) is NavigableString:
                    own.append(str(child))
            item = _clean_inline(" ".join(own))
            if item:
                out.append("- " + item)
            for sub in nested:
                list_items(sub, out)

    def walk(node: Tag) -> None:
        inline: list[str] = []

        def flush() -> None:
            text = _clean_inline(" ".join(inline))
            inline.clear()
            if text:
                blocks.append(_Block("text", text))

        for child in node.children:
            if type(child) is NavigableString:  # comments, doctypes etc. are subclasses and are skipped
                inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HTML_INLINE:
                inline.append(child.get_text(" "))
                continue
            flush()
            if name in _HTML_HEADINGS:
                heading = text_of(child)
                if heading:
                    blocks.append(_Block("heading", heading, level=_HTML_HEADINGS[name]))
            elif name in ("ul", "ol"):
                items: list[str] = []
                list_items(child, items)
                if items:
                    blocks.append(_Block("text", "\n".join(items)))
            elif name == "li":  # stray item outside a list
                item = text_of(child)
                if item:
                    blocks.append(_Block("text", "- " + item))
            elif name == "table":
                rows = []
                for tr in child.find_all("tr"):
                    cells = [text_of(c) for c in tr.find_all(["td", "th"], recursive=False)]
                    row = " | ".join(c for c in cells if c)
                    if row:
                        rows.append(row)
                if rows:
                    blocks.append(_Block("text", "\n".join(rows)))
                caption = child.find("caption")
                if caption and text_of(caption):
                    blocks.insert(len(blocks) - (1 if rows else 0), _Block("text", text_of(caption)))
            elif name == "pre":
                text = _clean_lines(child.get_text())
                if text:
                    blocks.append(_Block("text", text))
            else:  # p, div, section, blockquote, dd ...: their inline runs become paragraphs
                walk(child)
        flush()

    walk(soup.body or soup)
    h1 = _single_h1_title(blocks)
    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return first_h1 or page_title, _build_sections(blocks, skip_heading=h1)


def _drop_hidden_html(soup) -> None:
    """Text a reader cannot see is not policy (and is where injected instructions hide): comments, CDATA,
    `hidden` / `aria-hidden` elements, and inline styles that hide. display:none and opacity:0 hide a whole
    subtree; visibility and font-size are inherited and a descendant may set them back, so those are decided
    for each piece of text from its nearest ancestor that sets them."""
    from bs4.element import NavigableString, PreformattedString

    for node in soup.find_all(string=lambda s: isinstance(s, PreformattedString)):
        node.extract()  # comments, CDATA, processing instructions, doctype: never rendered as text
    for tag in soup.find_all(True):
        if tag.decomposed:  # inside a subtree already dropped
            continue
        style = _css_declarations(tag.get("style"))
        display = style.get("display")
        hidden = ("hidden" in tag.attrs and display in (None, "none")  # author CSS may display a hidden element
                  or str(tag.get("aria-hidden", "")).strip().lower() == "true"
                  or display == "none" or _css_zero(style.get("opacity", "1")))
        if hidden:
            tag.decompose()

    inherited: dict[int, tuple[str | None, str | None]] = {}  # id(tag) -> (visibility, font size) it sets

    def invisible(text: NavigableString) -> bool:
        visibility = size = None
        for parent in text.parents:
            if parent.name == "[document]":
                break
            if id(parent) not in inherited:
                style = _css_declarations(parent.get("style"))
                declared = _css_font_size(style)
                if declared is not None and not _css_zero(declared) and _css_relative(declared):
                    declared = None  # em and % sizes scale the parent's: the answer is further up
                own = style.get("visibility")
                inherited[id(parent)] = (None if own in ("inherit", "unset", "revert") else own, declared)
            own_visibility, own_size = inherited[id(parent)]
            visibility = visibility or own_visibility
            size = size or own_size
            if visibility is not None and size is not None:
                break
        return visibility in ("hidden", "collapse") or (size is not None and _css_zero(size))

    for text in [t for t in soup.find_all(string=True) if type(t) is NavigableString and t.strip()]:
        if invisible(text):
            text.extract()


_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_ZERO = re.compile(r"[+-]?(0+(\.0*)?|\.0+)([a-z]+|%)?")
_CSS_RELATIVE = re.compile(r"[\d.]+(em|ex|ch|%|cap|ic|lh)|larger|smaller|calc\(.*|inherit|unset|revert.*")  # not rem


def _css_declarations(style) -> dict[str, str]:
    """Inline style as {property: value}, lower case, comments and !important removed; last one wins."""
    if not style or not isinstance(style, str):
        return {}
    declarations: dict[str, str] = {}
    for declaration in _CSS_COMMENT.sub(" ", style).split(";"):
        prop, sep, value = declaration.partition(":")
        if sep:
            value = " ".join(value.lower().replace("!important", " ").split())
            declarations[prop.strip().lower()] = value
    return declarations


def _css_zero(value: str) -> bool:
    return bool(_CSS_ZERO.fullmatch(value.strip()))


def _css_relative(value: str) -> bool:
    return bool(_CSS_RELATIVE.fullmatch(value.strip()))


def _css_font_size(style: dict[str, str]) -> str | None:
    """The font size an inline style sets: font-size, or the size in the `font` shorthand ("0/0 a" hides)."""
    if "font-size" in style:
        return style["font-size"]
    sizes = [t.split("/")[0] for t in style.get("font", "").split() if t[:1].isdigit() or t[:1] == "."]
    if any(_css_zero(size) for size in sizes):
        return "0"
    # A unitless number before the size is a weight ("700 12px Arial").
    return next((size for size in sizes if not size.replace(".", "").isdigit()), None)


# ---------------------------------------------------------------------------------------------------------
# DOCX


def _load_docx(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str | None, list[Section]]:
    # Sizes, ratios and DTDs checked first; python-docx's own XML parser does not resolve entities either.
    document_limits.check_zip_package(data, max_bytes)
    try:
        import docx
        from docx.oxml.ns import qn
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        document = docx.Document(io.BytesIO(data))
        core_title = _clean_inline(document.core_properties.title or "")
    except Exception as exc:  # BadZipFile, PackageNotFoundError, lxml errors, KeyError on missing parts...
        raise DocumentError(filename, f"could not be read as DOCX: {_short(exc)}; "
                                      "open it in Word and save it again as .docx") from exc

    def block_items(parent):
        for child in parent.iterchildren():
            if child.tag == qn("w:p"):
                yield Paragraph(child, document)
            elif child.tag == qn("w:tbl"):
                yield Table(child, document)
            elif child.tag == qn("w:sdt"):  # content controls (templates, forms) wrap real paragraphs
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from block_items(content)

    blocks: list[_Block] = []
    list_lines: list[str] = []
    style_title: str | None = None

    def flush_list() -> None:
        if list_lines:
            blocks.append(_Block("text", "\n".join(list_lines)))
            list_lines.clear()

    for item in block_items(document.element.body):
        if isinstance(item, Table):
            flush_list()
            rows = _docx_table_rows(item)
            if rows:
                blocks.append(_Block("text", "\n".join(rows)))
            continue
        text = _clean_inline(item.text)
        if not text:
            continue
        style = _docx_style(item)
        level = _docx_heading_level(style)
        if style == "title":
            flush_list()
            if style_title is None:
                style_title = text
                continue
            level = 1  # a second Title paragraph: treat as a top heading
        if level:
            flush_list()
            blocks.append(_Block("heading", text, level=level))
        elif style.startswith("list") or _docx_is_numbered(item):
            list_lines.append("- " + text)
        else:
            flush_list()
            blocks.append(_Block("text", text))
    flush_list()

    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    title = core_title or style_title or first_h1
    h1 = _single_h1_title(blocks)
    skip = h1 if h1 and title and _same(h1, title) else None
    return title, _build_sections(blocks, skip_heading=skip)


def _docx_style(paragraph) -> str:
    try:
        style = paragraph.style
        return (style.name or "").strip().lower() if style is not None else ""
    except Exception:  # broken style references: treat as body text
        return ""


def _docx_heading_level(style: str) -> int:
    m = re.match(r"^heading\s*([1-9])$", style)
    return min(int(m.group(1)), 6) if m else 0


def _docx_is_numbered(paragraph) -> bool:
    ppr = paragraph._p.pPr
    return ppr is not None and ppr.numPr is not None


def _docx_table_rows(table) -> list[str]:
    rows: list[str] = []
    try:
        for row in table.rows:
            cells, seen = [], set()
            for cell in row.cells:
                if id(cell._tc) in seen:  # merged cells repeat the same cell object
                    continue
                seen.add(id(cell._tc))
                text = _clean_inline(cell.text)
                if text:
                    cells.append(text)
            if cells:
                rows.append(" | ".join(cells))
    except Exception:  # malformed grid spans: fall back to the raw cell elements
        from docx.oxml.ns import qn

        rows = []
        for tr in table._tbl.iter(qn("w:tr")):
            cells = [_clean_inline("".join(t.text or "" for t in tc.iter(qn("w:t")))) for tc in tr.iter(qn("w:tc"))]
            if any(cells):
                rows.append(" | ".join(c for c in cells if c))
    return rows


# ---------------------------------------------------------------------------------------------------------
# PDF


@dataclass
class _Line:
    text: str
    page: int
    size: float | None = None  # effective font size, when the PDF tells us
    y: float | None = None  # baseline, PDF units (up is larger)
    bold: bool = False


_BULLET = re.compile(r"^([•·▪◦●■□➢►‣⁃∙*–-]|\d{1,3}[.)]|[a-z][.)]|\(\w{1,3}\))\s+")
_PAGE_NUMBER = re.compile(r"^(page\s*)?[-–]?\s*\d{1,4}\s*[-–]?(\s*(of|/)\s*\d{1,4})?$", re.I)
_JUNK_META_TITLE = re.compile(r"^(untitled|microsoft word\b|document\d*$|slide\s*\d*$)|\.(docx?|pdf|rtf|odt)$", re.I)


def _load_pdf(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str | None, list[Section]]:
    with document_limits.pdf_limits(max_bytes) as budget:  # pages, streams and text bounded while pypdf reads
        return _read_pdf(data, filename, budget)


def _read_pdf(data: bytes, filename: str, budget: document_limits.PdfBudget) -> tuple[str | None, list[Section]]:
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise DocumentError(filename, "could not be read as PDF: it is password-protected; "
                                              "remove the password and upload it again")
        budget.check_pages(len(reader.pages))
        pages = list(reader.pages)
        meta_title = ""
        try:
            meta_title = _clean_inline(str((reader.metadata or {}).get("/Title") or ""))
        except Exception:
            pass  # a broken info dictionary is no reason to reject the text
    except (DocumentError, document_limits.UnsafeDocument):
        raise
    except Exception as exc:
        if document_limits.is_pdf_limit(exc):
            raise budget.refusal(exc) from exc
        raise DocumentError(filename, f"could not be read as PDF: {_short(exc)}; "
                                      "check it opens in a PDF viewer, export it again and retry") from exc
    if not pages:
        raise DocumentError(filename, "could not be read as PDF: it has no pages; export it again and retry")

    page_lines: list[list[_Line]] = []
    failures: list[Exception] = []
    for number, page in enumerate(pages, start=1):
        try:
            budget.add_page(page)
            lines = _pdf_page_lines(page, number)
            budget.add_text(sum(len(line.text) for line in lines))
            page_lines.append(lines)
        except document_limits.UnsafeDocument:
            raise
        except Exception as exc:  # one bad page should not cost the rest of the document; a bomb should
            if document_limits.is_pdf_limit(exc):
                raise budget.refusal(exc) from exc
            failures.append(exc)
            page_lines.append([])
    if failures and len(failures) == len(pages):
        raise DocumentError(filename, f"could not be read as PDF: {_short(failures[0])}; "
                                      "check it opens in a PDF viewer, export it again and retry")
    _drop_running_heads(page_lines)
    lines = [line for page in page_lines for line in page]
    if not lines:
        return None, []  # load_bytes turns this into the "scanned image" message

    if _JUNK_META_TITLE.search(meta_title):
        meta_title = ""
    body_size = _body_size(lines)
    title = meta_title or None
    first = lines[0]
    largest = max((l.size for l in lines if l.size), default=None)
    # The first line is the visible title when it matches the metadata, when there is no metadata title and it
    # looks like one, or when it is set in the document's largest type (a cover title). It is not a heading.
    if (_same(first.text, meta_title)
            or (_pdf_title_like(first, body_size)
                and (not meta_title or (first.size and body_size and first.size == largest
                                        and first.size >= body_size * 1.1)))):
        title = meta_title or first.text
        lines = lines[1:]
    return title, _build_sections(_pdf_blocks(lines, body_size))


def _pdf_page_lines(page, number: int) -> list[_Line]:
    """Lines of one page with their font size and position, taken from pypdf's visitor (whose pieces add up to
    exactly the text extract_text returns)."""
    fragments: list[list[tuple[str, float | None, float | None, bool]]] = [[]]

    def visit(text, cm, tm, font_dict, font_size):
        if not text:
            return
        try:
            scale = (tm[2] ** 2 + tm[3] ** 2) ** 0.5 * (cm[2] ** 2 + cm[3] ** 2) ** 0.5
            size = round(float(font_size) * (scale or 1.0), 1) if font_size else None
            y = cm[1] * tm[4] + cm[3] * tm[5] + cm[5]
            font = str(font_dict.get("/BaseFont", "")) if font_dict else ""
        except Exception:
            size, y, font = None, None, ""
        bold = bool(re.search(r"bold|black|heavy|semibold|demi", font, re.I))
        for k, part in enumerate(text.split("\n")):
            if k:
                fragments.append([])
            if part:
                fragments[-1].append((part, size, y, bold))

    returned = page.extract_text(visitor_text=visit) or ""
    joined = "\n".join("".join(f[0] for f in line) for line in fragments)
    if re.sub(r"\s", "", joined) != re.sub(r"\s", "", returned):
        # Visitor and text disagree (unusual fonts): keep the text, lose the layout hints.
        return [_Line(t, number) for t in (_clean_inline(x) for x in returned.split("\n")) if t]

    lines: list[_Line] = []
    for frags in fragments:
        text = _clean_inline("".join(f[0] for f in frags))
        if not text:
            continue
        weights: Counter = Counter()
        for part, size, _, _ in frags:
            if size and part.strip():
                weights[size] += len(part.strip())
        y = next((f[2] for f in frags if f[0].strip() and f[2] is not None), None)
        bold = all(f[3] for f in frags if f[0].strip())
        lines.append(_Line(text, number, weights.most_common(1)[0][0] if weights else None, y, bold))
    return lines


def _drop_running_heads(pages: list[list[_Line]]) -> None:
    """Remove page numbers and headers/footers repeated on most pages: they are not content."""
    def key(line: _Line) -> str:
        text = line.text.casefold()
        # Only "page" lines may differ by their numbers: numbered headings ("1 Scope") also open pages.
        return re.sub(r"\d+", "#", text) if re.search(r"\bpage\b", text) else text

    def edge(lines: list[_Line]) -> list[_Line]:  # where running heads live: two lines at top and bottom
        return lines[:2] + lines[-2:] if len(lines) > 4 else list(lines)

    counts: Counter = Counter()
    for lines in pages:
        counts.update({key(line) for line in edge(lines)})
    repeated = {k for k, n in counts.items() if len(pages) >= 3 and n >= 0.6 * len(pages)}
    for lines in pages:
        drop = {id(line) for line in edge(lines) if key(line) in repeated or _PAGE_NUMBER.match(line.text)}
        lines[:] = [line for line in lines if id(line) not in drop]


def _body_size(lines: list[_Line]) -> float | None:
    weights: Counter = Counter()
    for line in lines:
        if line.size:
            weights[round(line.size * 2) / 2] += len(line.text)
    return weights.most_common(1)[0][0] if weights else None


def _pdf_title_like(line: _Line, body_size: float | None) -> bool:
    text = line.text
    if (len(text) > 100 or len(text.split()) > 15 or text.endswith(_END_PUNCT) or _NUMBERED.match(text)
            or _BULLET.match(text) or not re.search(r"[^\W\d_]", text)):
        return False
    bigger = bool(line.size and body_size and line.size >= body_size * 1.1)
    return bigger or line.bold or _title_case(text) or _is_caps_heading(text)


def _pdf_blocks(lines: list[_Line], body_size: float | None) -> list[_Block]:
    """Find headings conservatively, then re-flow the remaining lines into paragraphs."""
    body_lengths = sorted(len(l.text) for l in lines if not body_size or not l.size or abs(l.size - body_size) < 0.6)
    full = body_lengths[int(len(body_lengths) * 0.8)] if body_lengths else 80
    full = max(full, 40)
    spacing = _line_spacing(lines, body_size)

    def gap_before(i: int) -> bool:
        prev, cur = lines[i - 1], lines[i]
        if prev.page != cur.page or spacing is None or prev.y is None or cur.y is None:
            return False
        return (prev.y - cur.y) > spacing * 1.3

    def ends_sentence(text: str) -> bool:
        return bool(re.search(r"[.!?:;][\"')\]]*$", text))

    def big(line: _Line) -> bool:
        return bool(line.size and body_size and line.size >= body_size * 1.12)

    def heading_shape(text: str) -> bool:
        return (2 <= len(text) <= 90 and len(text.split()) <= 12 and not text.endswith(_END_PUNCT)
                and not _BULLET.match(text) and bool(re.search(r"[^\W\d_]", text)))

    heading_at: dict[int, str] = {}  # index → "num", "big", "plain"
    for i, line in enumerate(lines):
        text = line.text
        if i + 1 >= len(lines) or not heading_shape(text):
            continue  # a heading must be followed by body text
        nxt = lines[i + 1].text
        if big(line):
            heading_at[i] = "big"
            continue
        prev_done = (i == 0 or lines[i - 1].page != line.page or ends_sentence(lines[i - 1].text)
                     or (i - 1) in heading_at or bool(_BULLET.match(lines[i - 1].text)) or gap_before(i))
        next_ok = not nxt[:1].islower()
        short = len(text) <= 0.75 * full
        if not (prev_done and next_ok and short):
            continue
        num = _NUMBERED.match(text)
        if num and num.group(2)[0].isupper() and len(num.group(2).split()) <= 10:
            nm = _NUMBERED.match(nxt)
            if not (nm and nm.group(1).count(".") == num.group(1).count(".") and not big(lines[i + 1])
                    and not lines[i + 1].bold):
                heading_at[i] = "num"  # a run of same-depth numbers at body style is a list
        elif num:
            continue
        elif line.bold and (not body_size or not line.size or line.size >= body_size - 0.5):
            heading_at[i] = "plain"
        elif _title_case(text) and len(text.split()) <= 8:
            heading_at[i] = "plain"

    # Several short Title Case lines in a row are a table, a list or an address, not a chain of headings: a
    # heading must be followed by body text.
    plain = {i for i, kind in heading_at.items() if kind == "plain"}
    heading_at = {i: kind for i, kind in heading_at.items() if not (i in plain and (i + 1 in plain or i - 1 in plain))}

    big_sizes = sorted({round(lines[i].size * 2) / 2 for i, k in heading_at.items() if k == "big" and lines[i].size},
                       reverse=True)
    # Numbered headings tell which depth a type size stands for; unnumbered headings in that size get that depth.
    size_depth: dict[float, int] = {}
    for i, kind in heading_at.items():
        num = _NUMBERED.match(lines[i].text)
        if kind == "big" and num and lines[i].size:
            size = round(lines[i].size * 2) / 2
            size_depth[size] = min(size_depth.get(size, 9), _number_depth(num.group(1)))

    blocks: list[_Block] = []
    para: list[_Line] = []
    numbered_depth = 0

    def flush() -> None:
        if para:
            blocks.append(_Block("text", _reflow([l.text for l in para]), page=para[0].page))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        kind = heading_at.get(i)
        if kind:
            flush()
            text = line.text
            # A heading wrapped over two lines at the same large size is still one heading.
            while (kind == "big" and heading_at.get(i + 1) == "big" and lines[i + 1].size == line.size
                   and lines[i + 1].page == line.page and not gap_before(i + 1) and len(text) < 120
                   and not _NUMBERED.match(lines[i + 1].text)):
                i += 1
                text += " " + lines[i].text
            num = _NUMBERED.match(text)
            if num:
                level = numbered_depth = _number_depth(num.group(1))
            elif kind == "big":
                size = round(line.size * 2) / 2
                level = size_depth.get(size) or big_sizes.index(size) + 1
            else:
                level = (len(big_sizes) + 1) if big_sizes else numbered_depth + 1
            blocks.append(_Block("heading", text, level=level))
            i += 1
            continue
        if para and (line.page != para[-1].page or _BULLET.match(line.text) or gap_before(i)
                     or (ends_sentence(para[-1].text) and len(para[-1].text) < 0.75 * full)):
            flush()
        para.append(line)
        i += 1
    flush()
    return blocks


def _line_spacing(lines: list[_Line], body_size: float | None) -> float | None:
    """Usual distance between two body lines of one paragraph. Short paragraphs make paragraph gaps common, so
    take a low quantile rather than the median."""
    def body(line: _Line) -> bool:
        return not body_size or bool(line.size and abs(line.size - body_size) < 0.6)

    gaps = sorted(a.y - b.y for a, b in zip(lines, lines[1:])
                  if a.page == b.page and a.y is not None and b.y is not None and a.y > b.y and body(a) and body(b))
    return gaps[len(gaps) // 4] if len(gaps) >= 2 else None


def _reflow(lines: list[str]) -> str:
    """Join PDF lines into a paragraph: line breaks inside a sentence are not paragraph breaks, and a word
    hyphenated across lines is joined again. Bullet lines keep their own line."""
    out = ""
    for line in lines:
        bullet = _BULLET.match(line)
        if bullet and bullet.group(1) in "•·▪◦●■□➢►‣⁃∙*–-":
            line = "- " + line[bullet.end():]
        if not out:
            out = line
        elif bullet:
            out += "\n" + line
        elif re.search(r"[^\W\d_]-$", out) and line[:1].islower():
            out = out[:-1] + line  # "employ-" + "ees"
        elif out.endswith("-") and not out.endswith(" -"):
            out += line  # "full-" + "Time": a real hyphen
        else:
            out += " " + line
    return out
