"""The entry points: check the type and size, hand the bytes to the format's parser, and turn whatever goes
wrong into a DocumentError; then drop empty sections and settle the title."""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path

from knowledge.loaders import limits
from knowledge.loaders.docx import load_docx
from knowledge.loaders.errors import DocumentError, short_reason
from knowledge.loaders.html import load_html
from knowledge.loaders.markdown import load_markdown
from knowledge.loaders.pdf import load_pdf
from knowledge.loaders.sections import LoadedDocument, clean_inline
from knowledge.loaders.text import load_text

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

    parser = {"markdown": load_markdown, "text": load_text, "html": load_html,
              # Packed formats get the size limit: what they may unpack to is derived from it.
              "pdf": lambda d, f: load_pdf(d, f, max_bytes), "docx": lambda d, f: load_docx(d, f, max_bytes)
              }[doc_type]
    try:
        title, sections = parser(data, filename)
    except DocumentError:
        raise
    except limits.UnsafeDocument as exc:  # bombs and DTDs: refused before they cost memory
        raise DocumentError(filename, exc.reason) from exc
    except Exception as exc:  # a parser bug or a library surprise must still read as a clear upload error
        raise DocumentError(filename, f"could not be read as {doc_type}: {short_reason(exc)}; "
                                      "check the file and try again") from exc

    sections = [s for s in sections if s.text.strip()]
    if not sections:
        hint = ("it may be a scanned image; export it with a text layer or OCR it first" if doc_type == "pdf"
                else "check the file has real text content")
        raise DocumentError(filename, f"has no extractable text; {hint}")
    title = clean_inline(title or "") or _humanize_stem(filename)
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


def _humanize_stem(filename: str) -> str:
    words = re.sub(r"[_\-.\s]+", " ", Path(filename).stem).split()
    return " ".join(w[:1].upper() + w[1:] for w in words) or filename
