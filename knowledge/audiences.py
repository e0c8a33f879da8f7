"""Document audiences: names, and changing who may read a document.

Every document has one or more audiences (default `everyone`). A reader holds a set of audiences, always
including `everyone`, and may read a document when the two sets meet. Retrieval enforces that in SQL
(knowledge/retrieval.py, AUDIENCE_FILTER); who holds which audience is the bot's business (bot/audiences.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.orm import sessionmaker

from knowledge import index
from knowledge.schema import Document

EVERYONE = "everyone"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class AudienceError(ValueError):
    """A bad audience name or list; the message says what a good one looks like."""


def parse_audiences(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`leadership, payroll-de` (or a list of names) as sorted, deduplicated, lower-case names; empty: everyone."""
    if value is None:
        return (EVERYONE,)
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    names = sorted({p.strip().lower() for p in parts if p and p.strip()})
    for name in names:
        if not _NAME.match(name):
            raise AudienceError(
                f"{name!r} is not an audience name: use lower-case letters, digits, '-', '_' or '.', "
                "e.g. `leadership` or `payroll-de`; separate several with commas")
    return tuple(names) or (EVERYONE,)


def reader_audiences(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A reader's audiences: the ones named, plus `everyone`, which every reader holds."""
    return tuple(sorted({*parse_audiences(value), EVERYONE}))


def readable(document_audiences: Iterable[str], reader: Iterable[str]) -> bool:
    return bool(set(document_audiences) & set(reader))


def restricted(document_audiences: Iterable[str]) -> bool:
    """Not readable by everyone."""
    return EVERYONE not in set(document_audiences)


def set_document_audiences(sessions: sessionmaker, id_or_title: str, audiences: Iterable[str]) -> Document | None:
    """Change who may read a document without re-uploading it. Bumps the corpus version, so cached answers and
    the per-audience relevance calibration built on the old audiences are never used again. None: no document."""
    from knowledge.ingest import find_document  # ingest imports this module

    names = parse_audiences(audiences)
    with sessions.begin() as session:
        index.lock_corpus(session)
        document = find_document(session, id_or_title)
        if document is None:
            return None
        if sorted(document.audiences or ()) != list(names):
            document.audiences = list(names)
            index.bump_corpus_version(session)
        return document
