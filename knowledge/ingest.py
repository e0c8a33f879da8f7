"""Add, replace and remove documents. Every change is one transaction and bumps the corpus version.

A document is identified by its source (file name, or path relative to an ingested folder). Ingesting a
source again with new content replaces its chunks atomically and bumps its version; the same content is a
no-op. An explicit title that matches an existing document replaces that document, whatever the file name.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from knowledge import index
from knowledge.audiences import EVERYONE, parse_audiences
from knowledge.chunking import ChunkDraft, chunk_document
from knowledge.embeddings import Embedder, EmbeddingMismatch
from knowledge.loaders import SUPPORTED_TYPES, DocumentError, LoadedDocument, load_bytes
from knowledge.schema import POSTINGS_SELECT, SECTION_SEPARATOR, Chunk, Document

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class IngestResult:
    document_id: int
    title: str
    source: str
    version: int
    chunks: int
    status: str  # created | updated | unchanged
    corpus_version: int
    audiences: tuple[str, ...] = (EVERYONE,)


def passage_text(doc_title: str, section_path: str, body: str) -> str:
    """What gets embedded: the title and section give a passage the context its body text often lacks."""
    heading = SECTION_SEPARATOR.join(part for part in (doc_title, section_path) if part)
    return f"{heading}\n{body}" if heading else body


def ingest_bytes(
    sessions: sessionmaker,
    embedder: Embedder,
    data: bytes,
    filename: str,
    *,
    source: str | None = None,
    title: str | None = None,
    link: str | None = None,
    uploaded_by: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    audiences: Iterable[str] | None = None,
) -> IngestResult:
    """Load, chunk, embed and store one document. Raises DocumentError for bad input, before any write.
    `audiences`: who may read it (knowledge/audiences.py); None keeps a replaced document's, `everyone` for a new one."""
    names = list(parse_audiences(audiences)) if audiences is not None else None
    loaded = load_bytes(data, filename, max_bytes=max_bytes)
    source = source or filename
    title = (title or "").strip() or loaded.title
    drafts = chunk_document(loaded)
    if not drafts:
        raise DocumentError(filename, "no extractable text after cleaning; check the file has real text content")

    with sessions() as session:
        existing = _find_existing(session, source, title if _explicit(title, loaded) else None)
        if existing and existing.content_hash == loaded.content_hash and existing.title == title and (
            link is None or existing.link == link
        ):
            if names is None or sorted(existing.audiences) == names:
                return _result(existing, "unchanged", index.corpus_version(session))
            unchanged_content = existing.id
        else:
            unchanged_content = None
    if unchanged_content is not None:  # only who may read it changed: no need to embed it again
        from knowledge.audiences import set_document_audiences

        document = set_document_audiences(sessions, str(unchanged_content), names)
        with sessions() as session:
            return _result(document, "updated", index.corpus_version(session))

    # Embedding is the slow part: done outside the transaction so nothing is locked meanwhile.
    vectors = embedder.embed_passages([passage_text(title, d.section_path, d.text) for d in drafts])

    with sessions.begin() as session:
        _, stored_model, _ = index.lock_corpus(session)
        index.check_compatible(session, embedder)
        if stored_model is None:
            _prepare_empty_index(session, embedder)
        existing = _find_existing(session, source, title if _explicit(title, loaded) else None)
        if existing is None:
            document = Document(
                title=title, source=source, link=link, doc_type=loaded.doc_type, content_hash=loaded.content_hash,
                version=1, size_bytes=len(data), uploaded_by=uploaded_by, audiences=names or [EVERYONE],
            )
            session.add(document)
            session.flush()
            status = "created"
        else:
            document = existing
            _remove_term_stats(session, document.id)
            session.execute(delete(Chunk).where(Chunk.document_id == document.id))
            document.title, document.source, document.doc_type = title, source, loaded.doc_type
            document.link = link if link is not None else document.link
            document.content_hash, document.size_bytes = loaded.content_hash, len(data)
            document.version += 1
            document.uploaded_by = uploaded_by or document.uploaded_by
            document.audiences = names or document.audiences
            document.updated_at = func.now()
            status = "updated"
        _insert_chunks(session, document, drafts, vectors)
        document.chunk_count = len(drafts)
        _add_term_stats(session, document.id)
        corpus_version = index.bump_corpus_version(session)
        session.flush()
        return _result(document, status, corpus_version)


def ingest_file(sessions: sessionmaker, embedder: Embedder, path: Path, *, source: str | None = None,
                **options) -> IngestResult:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DocumentError(path.name, f"cannot be read: {err.strerror or err}") from err
    max_bytes = options.get("max_bytes", DEFAULT_MAX_BYTES)
    if size > max_bytes:  # checked before reading a huge file into memory
        raise DocumentError(
            path.name, f"is {size / 1048576:.1f} MB, over the {max_bytes / 1048576:.0f} MB limit; split it or compress its images"
        )
    return ingest_bytes(sessions, embedder, path.read_bytes(), path.name, source=source or path.name, **options)


@dataclass(frozen=True)
class IngestProgress:
    """Where a bulk ingest stands, after each file."""

    files_done: int
    files_total: int
    passages: int  # stored by the files done so far (unchanged files count 0)
    bytes_done: int
    bytes_total: int
    elapsed_s: float

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left, from the bytes still to do at the rate so far; None before the first file."""
        if not self.bytes_done or self.elapsed_s <= 0:
            return None
        return (self.bytes_total - self.bytes_done) * self.elapsed_s / self.bytes_done


def ingest_files(
    sessions: sessionmaker,
    embedder: Embedder,
    files: Sequence[tuple[Path, str]],
    *,
    workers: int | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    **options,
) -> Iterator[tuple[Path, str, IngestResult | Exception]]:
    """ingest_file for many (file, source) pairs (discover()'s), yielded in order with the result or the
    DocumentError / EmbeddingMismatch that refused the file.

    Files are ingested by a few threads at once: one file's passages are embedded while another's are loaded
    or stored, so the embedder never waits for the database. Writes stay one at a time (each document's
    transaction locks the corpus row) and embedding stays as parallel as the embedder allows: the local model
    is one multi-threaded engine, the openai backend bounds its requests in flight (`concurrency`)."""
    workers = workers or max(2, int(getattr(embedder, "concurrency", 1)))
    sizes = []
    for path, _ in files:
        try:
            sizes.append(Path(path).stat().st_size)
        except OSError:
            sizes.append(0)
    started = time.perf_counter()

    def one(item: tuple[Path, str]) -> IngestResult | Exception:
        path, source = item
        try:
            return ingest_file(sessions, embedder, path, source=source, **options)
        except (DocumentError, EmbeddingMismatch) as err:
            return err

    passages = done_bytes = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for number, ((path, source), outcome) in enumerate(zip(files, pool.map(one, files)), 1):
            if isinstance(outcome, IngestResult) and outcome.status != "unchanged":
                passages += outcome.chunks
            done_bytes += sizes[number - 1]
            if progress:
                progress(IngestProgress(number, len(files), passages, done_bytes, sum(sizes),
                                        time.perf_counter() - started))
            yield path, source, outcome


def discover(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Expand files and folders into (file, source) pairs; a folder's files are named relative to it."""
    found: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() in SUPPORTED_TYPES and not file.name.startswith("."):
                    found.append((file, file.relative_to(path).as_posix()))
        else:
            found.append((path, path.name))
    return found


def remove_document(sessions: sessionmaker, id_or_title: str) -> Document | None:
    """Remove a document by id, title or source (case-insensitive). Returns what was removed, or None."""
    with sessions.begin() as session:
        index.lock_corpus(session)
        document = find_document(session, id_or_title)
        if document is None:
            return None
        _remove_term_stats(session, document.id)
        session.delete(document)
        index.bump_corpus_version(session)
        return document


def find_document(session: Session, id_or_title: str) -> Document | None:
    key = id_or_title.strip()
    if key.isdigit():
        found = session.get(Document, int(key))
        if found:
            return found
    return session.scalars(
        select(Document).where((func.lower(Document.title) == key.lower()) | (func.lower(Document.source) == key.lower()))
        .order_by(Document.id)
    ).first()


def list_documents(sessions: sessionmaker) -> list[Document]:
    with sessions() as session:
        return list(session.scalars(select(Document).order_by(func.lower(Document.title))))


def _explicit(title: str, loaded: LoadedDocument) -> bool:
    return title != loaded.title


def _find_existing(session: Session, source: str, explicit_title: str | None) -> Document | None:
    if explicit_title:
        by_title = session.scalars(
            select(Document).where(func.lower(Document.title) == explicit_title.lower()).order_by(Document.id)
        ).first()
        if by_title:
            return by_title
    return session.scalars(select(Document).where(Document.source == source)).first()


def _prepare_empty_index(session: Session, embedder: Embedder) -> None:
    """First document: make the column's dimension match the configured model (e.g. 1536 for OpenAI)."""
    if embedder.dim and index.column_dimension(session) != embedder.dim:
        index.set_dimension(session, embedder.dim)
        index.finish_dimension_change(session)
    index.record_model(session, embedder)


def _insert_chunks(session: Session, document: Document, drafts: list[ChunkDraft], vectors) -> None:
    session.add_all(
        Chunk(
            document_id=document.id, position=d.position, doc_title=document.title, section_path=d.section_path,
            page=d.page, text=d.text, embedding=vectors[i],
        )
        for i, d in enumerate(drafts)
    )
    session.flush()


def _add_term_stats(session: Session, document_id: int) -> None:
    """The document's chunks into term_stats (frequencies) and term_postings (per-chunk weights)."""
    session.execute(
        text(
            "INSERT INTO term_stats (lexeme, ndoc) "
            f"SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks WHERE document_id = {int(document_id)}') "
            "ON CONFLICT (lexeme) DO UPDATE SET ndoc = term_stats.ndoc + excluded.ndoc"
        )
    )
    session.execute(
        text(f"INSERT INTO term_postings (lexeme, chunk_id, weight) {POSTINGS_SELECT} WHERE c.document_id = :d"),
        {"d": document_id},
    )


def _remove_term_stats(session: Session, document_id: int) -> None:
    session.execute(
        text(
            "UPDATE term_stats t SET ndoc = t.ndoc - s.ndoc "
            f"FROM ts_stat('SELECT tsv FROM chunks WHERE document_id = {int(document_id)}') s WHERE t.lexeme = s.word"
        )
    )
    session.execute(text("DELETE FROM term_stats WHERE ndoc <= 0"))
    # By key (lexeme, chunk): the table has no index on chunk_id, and needs none.
    session.execute(
        text(
            "DELETE FROM term_postings p USING (SELECT c.id, u.lexeme FROM chunks c, unnest(c.tsv) u "
            "WHERE c.document_id = :d) x WHERE p.lexeme = x.lexeme AND p.chunk_id = x.id"
        ),
        {"d": document_id},
    )


def _result(document: Document, status: str, corpus_version: int) -> IngestResult:
    return IngestResult(
        document_id=document.id, title=document.title, source=document.source, version=document.version,
        chunks=document.chunk_count, status=status, corpus_version=corpus_version,
        audiences=tuple(document.audiences or (EVERYONE,)),
    )
