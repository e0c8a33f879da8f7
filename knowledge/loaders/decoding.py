"""Bytes to text for the text formats (markdown, plain text, HTML), refusing binary data."""

from __future__ import annotations

import unicodedata

from knowledge.loaders.errors import DocumentError


def decode_text(data: bytes, filename: str) -> str:
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
