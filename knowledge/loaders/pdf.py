"""PDF (pypdf): lines with their font size and position, running heads dropped, headings found conservatively
from type size, weight, numbering and spacing, the rest re-flowed into paragraphs; page and stream budgets."""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass

from knowledge.loaders import limits
from knowledge.loaders.errors import DocumentError, short_reason
from knowledge.loaders.headings import END_PUNCT, NUMBERED, is_caps_heading, number_depth, title_case
from knowledge.loaders.sections import Block, Section, build_sections, clean_inline, same_text


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


def load_pdf(data: bytes, filename: str, max_bytes: int) -> tuple[str | None, list[Section]]:
    with limits.pdf_limits(max_bytes) as budget:  # pages, streams and text bounded while pypdf reads
        return _read_pdf(data, filename, budget)


def _read_pdf(data: bytes, filename: str, budget: limits.PdfBudget) -> tuple[str | None, list[Section]]:
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
            meta_title = clean_inline(str((reader.metadata or {}).get("/Title") or ""))
        except Exception:
            pass  # a broken info dictionary is no reason to reject the text
    except (DocumentError, limits.UnsafeDocument):
        raise
    except Exception as exc:
        if limits.is_pdf_limit(exc):
            raise budget.refusal(exc) from exc
        raise DocumentError(filename, f"could not be read as PDF: {short_reason(exc)}; "
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
        except limits.UnsafeDocument:
            raise
        except Exception as exc:  # one bad page should not cost the rest of the document; a bomb should
            if limits.is_pdf_limit(exc):
                raise budget.refusal(exc) from exc
            failures.append(exc)
            page_lines.append([])
    if failures and len(failures) == len(pages):
        raise DocumentError(filename, f"could not be read as PDF: {short_reason(failures[0])}; "
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
    if (same_text(first.text, meta_title)
            or (_pdf_title_like(first, body_size)
                and (not meta_title or (first.size and body_size and first.size == largest
                                        and first.size >= body_size * 1.1)))):
        title = meta_title or first.text
        lines = lines[1:]
    return title, build_sections(_pdf_blocks(lines, body_size))


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
        return [_Line(t, number) for t in (clean_inline(x) for x in returned.split("\n")) if t]

    lines: list[_Line] = []
    for frags in fragments:
        text = clean_inline("".join(f[0] for f in frags))
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
    if (len(text) > 100 or len(text.split()) > 15 or text.endswith(END_PUNCT) or NUMBERED.match(text)
            or _BULLET.match(text) or not re.search(r"[^\W\d_]", text)):
        return False
    bigger = bool(line.size and body_size and line.size >= body_size * 1.1)
    return bigger or line.bold or title_case(text) or is_caps_heading(text)


def _pdf_blocks(lines: list[_Line], body_size: float | None) -> list[Block]:
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
        return (2 <= len(text) <= 90 and len(text.split()) <= 12 and not text.endswith(END_PUNCT)
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
        num = NUMBERED.match(text)
        if num and num.group(2)[0].isupper() and len(num.group(2).split()) <= 10:
            nm = NUMBERED.match(nxt)
            if not (nm and nm.group(1).count(".") == num.group(1).count(".") and not big(lines[i + 1])
                    and not lines[i + 1].bold):
                heading_at[i] = "num"  # a run of same-depth numbers at body style is a list
        elif num:
            continue
        elif line.bold and (not body_size or not line.size or line.size >= body_size - 0.5):
            heading_at[i] = "plain"
        elif title_case(text) and len(text.split()) <= 8:
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
        num = NUMBERED.match(lines[i].text)
        if kind == "big" and num and lines[i].size:
            size = round(lines[i].size * 2) / 2
            size_depth[size] = min(size_depth.get(size, 9), number_depth(num.group(1)))

    blocks: list[Block] = []
    para: list[_Line] = []
    numbered_depth = 0

    def flush() -> None:
        if para:
            blocks.append(Block("text", _reflow([l.text for l in para]), page=para[0].page))
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
                   and not NUMBERED.match(lines[i + 1].text)):
                i += 1
                text += " " + lines[i].text
            num = NUMBERED.match(text)
            if num:
                level = numbered_depth = number_depth(num.group(1))
            elif kind == "big":
                size = round(line.size * 2) / 2
                level = size_depth.get(size) or big_sizes.index(size) + 1
            else:
                level = (len(big_sizes) + 1) if big_sizes else numbered_depth + 1
            blocks.append(Block("heading", text, level=level))
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
