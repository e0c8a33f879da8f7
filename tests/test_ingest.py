import pytest
from sqlalchemy import text

from knowledge import index
from knowledge.embeddings import EmbeddingMismatch
from knowledge.ingest import ingest_bytes, ingest_file, list_documents, remove_document
from knowledge.loaders import DocumentError
from knowledge.reindex import reindex
from knowledge.retrieval import search
from tests.helpers import HashEmbedder, write

LEAVE_V1 = """# Leave Policy

## Vacation
Full-time employees receive 25 days of paid vacation per calendar year.
Unused days can be carried over until March 31.

## Sick Leave
Tell your manager before 10:00 on the first day of illness.
"""

LEAVE_V2 = LEAVE_V1.replace("25 days", "27 days")


def _counts(runtime):
    with runtime.sessions() as s:
        docs = s.execute(text("SELECT count(*) FROM documents")).scalar_one()
        chunks = s.execute(text("SELECT count(*) FROM chunks")).scalar_one()
        return docs, chunks, index.corpus_version(s)


def _term_stats_exact(runtime) -> bool:
    with runtime.sessions() as s:
        diff = s.execute(text(
            "SELECT count(*) FROM (SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks') "
            "EXCEPT SELECT lexeme, ndoc FROM term_stats) a"
        )).scalar_one() + s.execute(text(
            "SELECT count(*) FROM (SELECT lexeme, ndoc FROM term_stats "
            "EXCEPT SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')) b"
        )).scalar_one()
    return diff == 0


def _postings_exact(runtime) -> bool:
    """term_postings holds exactly every (lexeme, chunk) and the weight a search computed from the tsvector."""
    from knowledge.schema import POSTINGS_SELECT

    with runtime.sessions() as s:
        diff = s.execute(text(
            f"SELECT count(*) FROM (({POSTINGS_SELECT}) EXCEPT SELECT lexeme, chunk_id, weight FROM term_postings) a"
        )).scalar_one() + s.execute(text(
            f"SELECT count(*) FROM (SELECT lexeme, chunk_id, weight FROM term_postings EXCEPT ({POSTINGS_SELECT})) b"
        )).scalar_one()
        # The stored weight is the one the query used to compute: ts_rank against the word's own tsquery.
        mismatched = s.execute(text(
            "SELECT count(*) FROM term_postings p JOIN chunks c ON c.id = p.chunk_id "
            "WHERE p.weight <> ts_rank(c.tsv, websearch_to_tsquery('english', p.lexeme), 1) "
            "AND numnode(websearch_to_tsquery('english', p.lexeme)) = 1 "
            "AND websearch_to_tsquery('english', p.lexeme)::text = quote_literal(p.lexeme)"
        )).scalar_one()
        total = s.execute(text("SELECT count(*) FROM term_postings")).scalar_one()
    return diff == 0 and mismatched == 0 and total > 0


def test_ingest_new_unchanged_changed_remove(runtime, tmp_path):
    path = write(tmp_path / "leave.md", LEAVE_V1)
    first = ingest_file(runtime.sessions, runtime.embedder, path)
    assert (first.status, first.version, first.title) == ("created", 1, "Leave Policy")
    assert first.chunks >= 1 and _counts(runtime) == (1, first.chunks, 1)
    with runtime.sessions() as s:
        old_ids = set(s.execute(text("SELECT id FROM chunks")).scalars())
        sections = set(s.execute(text("SELECT section_path FROM chunks")).scalars())
    assert {"Vacation", "Sick Leave"} <= sections

    again = ingest_file(runtime.sessions, runtime.embedder, path)
    assert again.status == "unchanged" and again.version == 1
    assert _counts(runtime)[2] == 1  # no-op: corpus version not bumped

    write(path, LEAVE_V2)
    changed = ingest_file(runtime.sessions, runtime.embedder, path)
    assert (changed.status, changed.version, changed.document_id) == ("updated", 2, first.document_id)
    docs, chunks, version = _counts(runtime)
    assert (docs, version) == (1, 2)
    with runtime.sessions() as s:
        new_ids = set(s.execute(text("SELECT id FROM chunks")).scalars())
        body = " ".join(s.execute(text("SELECT text FROM chunks")).scalars())
    assert not old_ids & new_ids and "27 days" in body and "25 days" not in body
    assert _term_stats_exact(runtime) and _postings_exact(runtime)

    removed = remove_document(runtime.sessions, "leave policy")
    assert removed is not None and removed.title == "Leave Policy"
    assert _counts(runtime) == (0, 0, 3)
    with runtime.sessions() as s:
        assert s.execute(text("SELECT count(*) FROM term_stats")).scalar_one() == 0
        assert s.execute(text("SELECT count(*) FROM term_postings")).scalar_one() == 0
    assert remove_document(runtime.sessions, "leave policy") is None


def test_explicit_title_replaces_document_with_that_title(runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave-2026.md", LEAVE_V1), title="Leave")
    result = ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave-2027.md", LEAVE_V2), title="Leave")
    assert result.status == "updated" and result.version == 2 and result.source == "leave-2027.md"
    assert [d.source for d in list_documents(runtime.sessions)] == ["leave-2027.md"]


def test_bad_file_writes_nothing(runtime, tmp_path):
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(DocumentError) as err:
        ingest_file(runtime.sessions, runtime.embedder, bad)
    assert "scan.pdf" in str(err.value)
    with pytest.raises(DocumentError, match="limit"):
        ingest_bytes(runtime.sessions, runtime.embedder, b"x" * 2048, "big.txt", max_bytes=1024)
    assert _counts(runtime) == (0, 0, 0)


def test_failed_replacement_keeps_the_old_version(runtime, tmp_path):
    path = write(tmp_path / "leave.md", LEAVE_V1)
    ingest_file(runtime.sessions, runtime.embedder, path)
    before = _counts(runtime)
    write(path, LEAVE_V2)

    class WrongSize(HashEmbedder):  # claims the right model, then hands the database 8-dim vectors mid-write
        def embed_passages(self, texts):
            return super().embed_passages(texts)[:, :8]

    broken = WrongSize(dim=runtime.embedder.dim, name=runtime.embedder.name)
    with pytest.raises(Exception):
        ingest_file(runtime.sessions, broken, path)
    assert _counts(runtime) == before
    with runtime.sessions() as s:
        assert "25 days" in " ".join(s.execute(text("SELECT text FROM chunks")).scalars())
        assert s.execute(text("SELECT version FROM documents")).scalar_one() == 1


def test_dimension_mismatch_detected_and_reindex(runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE_V1))
    other = HashEmbedder(dim=8, name="openai:text-embedding-3-small")
    with runtime.sessions() as s, pytest.raises(EmbeddingMismatch, match="policybot reindex"):
        index.check_compatible(s, other)
    with pytest.raises(EmbeddingMismatch):
        ingest_file(runtime.sessions, other, write(tmp_path / "other.md", "# Other\n\nSome text here."))

    count = reindex(runtime.sessions, other)
    assert count == _counts(runtime)[1]
    with runtime.sessions() as s:
        index.check_compatible(s, other)  # no longer raises
        assert index.column_dimension(s) == 8
        results = search(s, other, "paid vacation days", k=3)
    assert results and results[0].title == "Leave Policy"
    assert _counts(runtime)[2] == 2  # reindex bumps the corpus version (cached answers are stale)


def test_folder_ingest_in_order_with_progress_and_refusals(runtime, tmp_path):
    from knowledge.ingest import discover, ingest_files

    folder = tmp_path / "handbook"
    for i in range(5):
        write(folder / f"p{i}.md", f"# Policy {i}\n\n## Rules\nRule number {i} covers topic{i} in detail.")
    write(folder / "empty.md", "   ")
    files = discover([folder])
    seen = []
    outcomes = list(ingest_files(runtime.sessions, runtime.embedder, files, workers=3, progress=seen.append))
    assert [source for _, source, _ in outcomes] == [source for _, source in files]  # in order
    refused = [source for _, source, r in outcomes if isinstance(r, DocumentError)]
    stored = [r for _, _, r in outcomes if not isinstance(r, Exception)]
    assert refused == ["empty.md"] and len(stored) == 5 and all(r.status == "created" for r in stored)
    assert [p.files_done for p in seen] == list(range(1, 7)) and seen[-1].files_total == 6
    assert seen[-1].passages == sum(r.chunks for r in stored) and seen[-1].bytes_done == seen[-1].bytes_total
    assert seen[-1].eta_s == 0 and seen[-1].passages_per_s > 0
    assert _counts(runtime)[:2] == (5, seen[-1].passages) and _term_stats_exact(runtime) and _postings_exact(runtime)
