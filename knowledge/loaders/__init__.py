"""Turn uploaded files (Markdown, text, HTML, PDF, DOCX) into a title and heading-aware sections.

Every failure on bad input becomes a DocumentError whose message names the file, says what is wrong and what
to do, so adapters can show it to the uploader as-is. Library exceptions never escape.

One module per format (markdown, text, html, pdf, docx), each a function `(data, filename) -> (title,
sections)`; the shared parts: `load` (the entry points: type, size, dispatch, title), `sections` (blocks
folded into sections, whitespace cleaning), `decoding` (bytes to text), `headings` (what a heading looks like
without markup), `errors` and `limits` (zip and PDF budgets for untrusted files). Format modules import only
the shared parts, never each other.
"""

from knowledge.loaders.errors import DocumentError
from knowledge.loaders.load import DEFAULT_MAX_BYTES, SUPPORTED_TYPES, load_bytes, load_file
from knowledge.loaders.sections import LoadedDocument, Section

__all__ = ["DEFAULT_MAX_BYTES", "SUPPORTED_TYPES", "DocumentError", "LoadedDocument", "Section", "load_bytes",
           "load_file"]
