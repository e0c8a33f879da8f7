"""Hybrid retrieval: HNSW vector search, with full text as the rescuer of exact rare terms, in one round trip.

Measured on real handbooks (benchmarks/real_handbooks.py), full text as a voter in rank fusion hurts:
employees paraphrase, so most of a question's words are common handbook words, and a passage that matches
several of them outranks the vector half's right answer (18F handbook, dev split: section recall@5 0.83 fused
vs 0.90 vector alone). What full text is good at is the exact rare term embeddings blur: a program name, a form
number, "Global Entry". So the ranking is the vector half's (TEXT_WEIGHT 0), and when the question's rarest
term is rare in the corpus (at most RESCUE_MAX_CHUNKS chunks, or RESCUE_MAX_SHARE of them) and the full-text
half's best passage holds it, that passage is guaranteed the last of the k places.

Hub passages, close to every question (knowledge/background.py), are ranked lower within the vector half.

The full-text half is bounded: query terms are kept rarest first until the chunks they match would exceed
`text_budget`, so a question full of common words ("policy", "employee") cannot make PostgreSQL rank most
of the corpus. Term frequencies come from `term_stats`, which ingestion keeps exact.

Cost: the full-text half reads the kept terms' postings from `term_postings`' primary key (lexeme, chunk_id)
INCLUDE (weight) — an index-only scan of at most `text_budget` rows carrying each chunk's precomputed
ts_rank — instead of fetching every matching chunk's row and ranking its tsvector (the same numbers, verified
query by query at 10k and 100k chunks). In hybrid mode, where the full-text half does not vote (TEXT_WEIGHT 0),
it only looks for the passage to rescue: it is read only when the question's rarest kept term is rare enough (a
one-time filter on `kept`'s min ndoc: no postings are read otherwise), within RESCUE_TEXT_BUDGET postings, and it
returns its best passage alone — so `text_rank` there is 1 or None; `text` mode and a non-zero text_weight rank
the full-text half in full. The vector half fetches CANDIDATES (20) rows, what the per-document cap and the hub
penalty need for k=5.

The statement is prepared once per connection and runs in one round trip, from one cached generic plan: its
candidate count is in the text (so the plan keeps the HNSW scan), the audience filter is a hashed check under the
scan (not a join that could drive it), and the bot's reads end in COMMIT (knowledge.db.reading), which keeps
psycopg's prepared statements where a ROLLBACK drops them. At 100k chunks a hybrid search costs about what
LangChain's PGVectorStore similarity search does (benchmarks/peer.py: p95 0.91× of it, p50 1.16×).

Audiences (knowledge/audiences.py): every candidate source (the vector half's index scan, the full-text half's
postings) keeps only chunks of documents the reader may read: audience_filter(), one SQL fragment with one bind
parameter (`:audiences`), inside the same round trip, so the top k are the top k of what the reader may read,
never a post-filter that returns fewer. pgvector's HNSW scan (0.6) filters the `hnsw.ef_search` nearest rows it
found; when restricted chunks crowd those out (the vector half found fewer than `candidates`) and fewer than k
rows come back, the query runs again in the same transaction with a wider scan (FILTERED_EF_SEARCH); measured
on 20k chunks the filtered query still walks the HNSW index. When every document is open to the reader (the
common case) both halves skip the filter at run time (`scope`, over the partial index documents_restricted). The term statistics stay corpus-wide: they
hold chunk counts per lexeme, never text, and they only choose which of the question's own words the full-text
half uses and whether its best *permitted* passage is rescued; a restricted chunk can only make a word look
more common, never be returned.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.orm import Session

from knowledge.audiences import EVERYONE
from knowledge.background import Background
from knowledge.embeddings import Embedder
from knowledge.schema import TS_CONFIG

RRF_K = 60
CANDIDATES = 20  # measured: 20 and 40 give the same top 5 on 431 of 432 real questions (the metrics unchanged)
TEXT_BUDGET = 3000
# When the full-text half only looks for the passage to rescue (hybrid, TEXT_WEIGHT 0) it reads fewer postings:
# measured on 432 real questions (18F, Basecamp, sample; dev and blind), 1,000 and 3,000 give the same top 5
# for every question, and the long tail of common-word questions costs a third of what it did.
RESCUE_TEXT_BUDGET = 1000
VECTOR_WEIGHT = 1.0
TEXT_WEIGHT = 0.0  # measured: any weight that changes the order costs recall on real handbooks
RESCUE_MAX_CHUNKS = 5
RESCUE_MAX_SHARE = 0.002
HUB_PENALTY = 1.0  # cosine distance added per unit of background similarity above the hub cut
PER_DOCUMENT = 3
MODES = ("hybrid", "vector", "text")


# A document that can be closed to some reader (it lacks `everyone`); the partial index documents_restricted
# (migration 0006) is built on exactly this predicate, so the planner uses it.
RESTRICTED_DOCUMENT = f"NOT (audiences @> '{{{EVERYONE}}}'::text[])"
FILTERED_EF_SEARCH = 1000  # the HNSW scan's width on the second try, when the audience filter thinned it


def audience_filter(chunk: str) -> str:
    """The SQL condition that keeps a chunk (`chunk` is its table alias or name) only when the reader's
    audiences (bind parameter `:audiences`, text[]) meet its document's. Applied to every candidate source."""
    return f"{chunk}.document_id IN (SELECT id FROM documents WHERE audiences && CAST(:audiences AS text[]))"


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    document_version: int
    title: str
    source: str
    link: str | None
    section: str
    page: int | None
    text: str
    score: float  # the fused rank score (or the single half's when mode is vector/text)
    vector_rank: int | None
    text_rank: int | None
    similarity: float | None  # cosine similarity of query and chunk, when the vector half found it
    matched_terms: int  # query terms (after the frequency cut) present in the chunk
    rescued: bool = False  # placed by the rare-term rescue, not by its fused score
    audiences: tuple[str, ...] = (EVERYONE,)  # who may read its document

    def as_json(self) -> dict:
        return {
            "document": {"id": self.document_id, "title": self.title, "source": self.source, "link": self.link},
            "section": self.section,
            "page": self.page,
            "text": self.text,
            "score": round(self.score, 6),
            "audiences": list(self.audiences),
        }


_SQL = """
WITH words AS (
    SELECT w, (tsvector_to_array(to_tsvector('{cfg}', w)))[1] AS lexeme
    FROM unnest(CAST(:words AS text[])) AS w
),
stats AS (
    SELECT DISTINCT ON (lexeme) w, lexeme, coalesce(s.ndoc, 0) AS ndoc
    FROM words LEFT JOIN term_stats s USING (lexeme)
    WHERE lexeme IS NOT NULL
),
kept AS (
    SELECT w, lexeme, ndoc, websearch_to_tsquery('{cfg}', w) AS q,
           ln(greatest((SELECT chunk_total FROM corpus_state WHERE id = 1), ndoc + 1)::float / ndoc) AS idf
    FROM (SELECT w, lexeme, ndoc, sum(ndoc) OVER (ORDER BY ndoc, w) AS running FROM stats) r
    WHERE ndoc > 0 AND running <= :budget
),
scope AS (
    -- Whether some document is closed to this reader; when none is, the postings need no filter.
    -- Only a document without `everyone` can be closed to anyone: the partial index documents_restricted (migration
    -- 0006) holds just those, so in the common case (none) this reads an empty index.
    SELECT EXISTS (SELECT 1 FROM documents WHERE {restricted_document}
                   AND NOT audiences && CAST(:audiences AS text[])) AS restricted
),
vec AS (
    -- Hubs (passages close to every question, knowledge/background.py) rank lower by how far they stand out.
    SELECT id, document_id, 1 - distance AS similarity,
           row_number() OVER (ORDER BY distance + :hub_penalty * greatest(0, background - :hub_cut), id) AS rank
    FROM (
        SELECT id, document_id, embedding <=> :embedding AS distance, -(embedding <#> :direction) AS background
        FROM chunks
        WHERE :use_vector AND (NOT (SELECT restricted FROM scope) OR {permitted_chunks})
        ORDER BY embedding <=> :embedding LIMIT {candidates}
    ) v
),
fts AS (
    -- Each matching term adds its IDF, more when frequent or in the title/section: rare terms lead. The
    -- per-chunk weight (ts_rank of the term) is precomputed in term_postings, read from its key alone.
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM (
        SELECT p.chunk_id AS id, sum(kept.idf * (0.5 + p.weight)) AS score
        FROM kept JOIN term_postings p ON p.lexeme = kept.lexeme
        WHERE :use_text
          -- When the text half does not vote (hybrid, TEXT_WEIGHT 0) it only feeds the rescue, which needs the
          -- rarest kept term to be rare: otherwise a one-time filter skips reading the postings at all.
          AND (:text_ranks OR (SELECT min(ndoc) FROM kept) <= greatest(
                   :rescue_max_chunks, :rescue_max_share * (SELECT chunk_total FROM corpus_state WHERE id = 1)))
          AND (NOT (SELECT restricted FROM scope)
               OR EXISTS (SELECT 1 FROM chunks c WHERE c.id = p.chunk_id AND {permitted_c}))
        -- Feeding only the rescue, its best passage is all it needs to return.
        GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT CASE WHEN :text_ranks THEN {candidates} ELSE 1 END
    ) t
),
fused AS (
    -- The vector half read each candidate's row already: only a full-text-only candidate looks its document up.
    SELECT coalesce(vec.id, fts.id) AS id,
           coalesce(vec.document_id, (SELECT c.document_id FROM chunks c WHERE c.id = fts.id)) AS document_id,
           coalesce(:vector_weight / (:rrf_k + vec.rank), 0) + coalesce(:text_weight / (:rrf_k + fts.rank), 0) AS score,
           vec.rank AS vector_rank, fts.rank AS text_rank, vec.similarity
    FROM vec FULL OUTER JOIN fts ON vec.id = fts.id
),
ranked AS (
    -- A cap on passages per document, so one long policy cannot crowd out the others.
    SELECT f.*, row_number() OVER (PARTITION BY f.document_id ORDER BY f.score DESC, f.id) AS in_document
    FROM fused f
),
top AS (
    SELECT r.*, false AS rescued FROM ranked r WHERE r.in_document <= :per_document
    ORDER BY r.score DESC, r.id LIMIT :limit
),
rescue AS (
    -- The full-text half's best passage, when it holds the question's rarest term and that term is rare.
    SELECT r.*, true AS rescued
    FROM ranked r JOIN chunks c ON c.id = r.id,
         (SELECT q, ndoc FROM kept ORDER BY ndoc, w LIMIT 1) rarest
    WHERE :use_vector AND r.text_rank = 1 AND c.tsv @@ rarest.q AND rarest.ndoc <= greatest(
              :rescue_max_chunks, :rescue_max_share * (SELECT chunk_total FROM corpus_state WHERE id = 1))
          AND r.id NOT IN (SELECT id FROM top)
),
picked AS (SELECT * FROM top UNION ALL SELECT * FROM rescue)
SELECT r.id, r.score, r.vector_rank, r.text_rank, r.similarity, r.rescued,
       c.document_id, c.section_path, c.page, c.text,
       d.title, d.source, d.link, d.version, d.audiences,
       (SELECT count(*) FROM kept WHERE c.tsv @@ kept.q) AS matched_terms,
       (SELECT count(*) FROM vec) AS vector_found
FROM picked r JOIN chunks c ON c.id = r.id JOIN documents d ON d.id = c.document_id
ORDER BY r.rescued, r.score DESC, r.id
"""

# psycopg's own placeholders: the statement runs on the session's connection, prepared once per connection
# (prepare=True: parsed and planned once, then only bound and executed). Through SQLAlchemy's text() the same
# call took ~3 ms more per search at 100k chunks (benchmarks/peer.py), more than the query's own server time.
# The candidate count is written into the text (one statement per value, in practice one): PostgreSQL plans a
# LIMIT it can see, so the one generic plan keeps the HNSW index scan (with `LIMIT $n` it guessed a tenth of the
# table and sorted it all).
# Comments and indentation are stripped: psycopg caches its parse of a query only up to 4,096 bytes, and parsing
# the commented text again on every call cost ~0.25 ms of the bot's CPU per search.
@functools.lru_cache(maxsize=8)
def statement(candidates: int) -> str:
    """The search statement for a candidate count, in psycopg's %(name)s placeholders."""
    sql = _SQL.format(cfg=TS_CONFIG, permitted_chunks=audience_filter("chunks"), permitted_c=audience_filter("c"),
                      restricted_document=RESTRICTED_DOCUMENT, candidates=int(candidates))
    sql = re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", sql)).strip()
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


_WORD = re.compile(r"\w+", re.UNICODE)


def _vector_text(vector) -> str:
    """pgvector's text form; sent untyped, PostgreSQL infers vector from the operator. Nine significant digits
    give every float32 back exactly, in two thirds of the text (and half the time) of a float64's repr."""
    return "[" + ",".join(["%.9g" % x for x in np.asarray(vector, dtype=np.float32).tolist()]) + "]"


_DIRECTION: tuple[list, str] | None = None  # the last background direction and its text: one per corpus version


def _direction_text(direction: list[float]) -> str:
    global _DIRECTION
    cached = _DIRECTION
    if cached is not None and cached[0] is direction:  # the same list (held here, so its id cannot be reused)
        return cached[1]
    text = _vector_text(direction)
    _DIRECTION = (direction, text)
    return text



def _all_audiences(session: Session) -> set[str]:
    """Every audience some document has (when the reader holds them all, the filter removes nothing)."""
    return set(session.execute(text("SELECT DISTINCT unnest(audiences) FROM documents")).scalars())


def query_words(question: str, limit: int = 32) -> list[str]:
    """The question's words, deduplicated in order (the SQL maps them to lexemes and drops stop words)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(question.lower()):
        if len(word) > 1 or word.isdigit():
            seen.setdefault(word, None)
    return list(seen)[:limit]


def search(
    session: Session,
    embedder: Embedder,
    question: str,
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = CANDIDATES,
    text_budget: int = TEXT_BUDGET,
    query_embedding=None,
    vector_weight: float = VECTOR_WEIGHT,
    text_weight: float = TEXT_WEIGHT,
    rrf_k: int = RRF_K,
    per_document: int = PER_DOCUMENT,
    background: Background | None = None,
    hub_penalty: float = HUB_PENALTY,
    audiences: Sequence[str] = (EVERYONE,),
) -> list[Passage]:
    """Top-k passages for a question, from documents the reader may read (`audiences`: the reader's, which
    always count `everyone`). `query_embedding` may be passed when the caller already has it;
    `background` (knowledge.background.measure, once per corpus version) ranks hub passages lower."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    use_vector = mode in ("hybrid", "vector")
    embedding = query_embedding if query_embedding is not None else (
        embedder.embed_query(question) if use_vector else None
    )
    if embedding is None:
        embedding = [0.0] * (embedder.dim or 1)
    background = background or Background.none(len(embedding))
    text_ranks = mode == "text" or float(text_weight) != 0.0  # else the text half only feeds the rescue
    params = {
        "words": query_words(question),
        "budget": text_budget if text_ranks else min(text_budget, RESCUE_TEXT_BUDGET),
        "embedding": _vector_text(embedding),
        "use_vector": use_vector,
        "use_text": mode in ("hybrid", "text"),
        "text_ranks": text_ranks,
        "rrf_k": rrf_k,
        "vector_weight": float(vector_weight),
        "text_weight": float(text_weight if mode == "hybrid" else 1.0),  # text mode ranks by text alone
        "limit": k,
        "per_document": per_document,
        "rescue_max_chunks": RESCUE_MAX_CHUNKS,
        "rescue_max_share": RESCUE_MAX_SHARE,
        "direction": _direction_text(background.direction),
        "hub_cut": float(background.hub_cut),
        "hub_penalty": float(hub_penalty),
        "audiences": sorted({*audiences, EVERYONE}),
    }
    sql = statement(candidates)
    connection = session.connection().connection.driver_connection  # the session's transaction, psycopg 3
    with connection.cursor(row_factory=namedtuple_row) as cursor:
        rows = cursor.execute(sql, params, prepare=True).fetchall()
        if use_vector and (not rows or rows[0].vector_found < candidates) and len(rows) < k and (
                _all_audiences(session) - set(params["audiences"])):
            # The audience filter may have thinned the HNSW scan's candidates (fewer than asked for, and fewer
            # than k passages): once more, wider, in the same transaction.
            cursor.execute(f"SET LOCAL hnsw.ef_search = {FILTERED_EF_SEARCH}")
            rows = cursor.execute(sql, params, prepare=True).fetchall()
    if len(rows) > k:  # a rescued passage takes the last place (never the only one)
        rows = [*rows[: k - 1], rows[-1]] if k > 1 else rows[:1]
    return [
        Passage(
            chunk_id=row.id, document_id=row.document_id, document_version=row.version, title=row.title,
            source=row.source, link=row.link, section=row.section_path, page=row.page, text=row.text,
            score=float(row.score), vector_rank=row.vector_rank, text_rank=row.text_rank,
            similarity=float(row.similarity) if row.similarity is not None else None,
            matched_terms=int(row.matched_terms), rescued=bool(row.rescued),
            audiences=tuple(row.audiences or (EVERYONE,)),
        )
        for row in rows
    ]
