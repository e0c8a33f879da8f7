"""DOCX (python-docx): heading and title styles, lists, tables and content controls; zip limits checked first."""

from __future__ import annotations

import io
import re

from knowledge.loaders import limits
from knowledge.loaders.errors import DocumentError, short_reason
from knowledge.loaders.sections import Block, Section, build_sections, clean_inline, same_text, single_h1_title


def load_docx(data: bytes, filename: str, max_bytes: int) -> tuple[str | None, list[Section]]:
    # Sizes, ratios and DTDs checked first; python-docx's own XML parser does not resolve entities either.
    limits.check_zip_package(data, max_bytes)
    try:
        import docx
        from docx.oxml.ns import qn
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        document = docx.Document(io.BytesIO(data))
        core_title = clean_inline(document.core_properties.title or "")
    except Exception as exc:  # BadZipFile, PackageNotFoundError, lxml errors, KeyError on missing parts...
        raise DocumentError(filename, f"could not be read as DOCX: {short_reason(exc)}; "
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

    blocks: list[Block] = []
    list_lines: list[str] = []
    style_title: str | None = None

    def flush_list() -> None:
        if list_lines:
            blocks.append(Block("text", "\n".join(list_lines)))
            list_lines.clear()

    for item in block_items(document.element.body):
        if isinstance(item, Table):
            flush_list()
            rows = _docx_table_rows(item)
            if rows:
                blocks.append(Block("text", "\n".join(rows)))
            continue
        text = clean_inline(item.text)
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
            blocks.append(Block("heading", text, level=level))
        elif style.startswith("list") or _docx_is_numbered(item):
            list_lines.append("- " + text)
        else:
            flush_list()
            blocks.append(Block("text", text))
    flush_list()

    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    title = core_title or style_title or first_h1
    h1 = single_h1_title(blocks)
    skip = h1 if h1 and title and same_text(h1, title) else None
    return title, build_sections(blocks, skip_heading=skip)


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
                text = clean_inline(cell.text)
                if text:
                    cells.append(text)
            if cells:
                rows.append(" | ".join(cells))
    except Exception:  # malformed grid spans: fall back to the raw cell elements
        from docx.oxml.ns import qn

        rows = []
        for tr in table._tbl.iter(qn("w:tr")):
            cells = [clean_inline("".join(t.text or "" for t in tc.iter(qn("w:t")))) for tc in tr.iter(qn("w:tc"))]
            if any(cells):
                rows.append(" | ".join(c for c in cells if c))
    return rows
