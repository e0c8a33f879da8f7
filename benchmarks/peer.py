"""policybot's retrieval against langchain-postgres's PGVectorStore on the same data, server and query vectors.

    pip install -e '.[bench]'                                   # langchain-postgres: benchmark-only
    python benchmarks/real_handbooks.py --corpus basecamp 18f --split dev   # once: the handbooks' databases
    python benchmarks/peer.py --sizes 10000 100000 --queries 300 --corpus basecamp 18f

Everything lives on real_handbooks.py's persistent embedded PostgreSQL under --home, so a 100k corpus is built
once and reused (`--rebuild` to build it again):

- speed: `common.bulk_load`'s synthetic corpus of N chunks (Zipf vocabulary with real HR words, synthetic
  384-dim vectors) in database `peer_<N>`; the same chunks copied into a LangChain table `lc_chunks` (content,
  embedding, a `content_tsv` column, source/section/title metadata columns) with the indexes LangChain's own
  `apply_vector_index(HNSWIndex())` (m=16, ef_construction=64, cosine) and `apply_hybrid_search_index()` (GIN)
  build. Per query, interleaved with a rotating order: our search() hybrid and vector (query vector passed, the
  corpus's background measured once as the bot does), LangChain's similarity_search_by_vector, and its hybrid
  search (HybridSearchConfig on `content_tsv`, the question as fts_query) with its defaults (4 + 4 candidates)
  and with 40 + 40. Wall time per call; paired ratios per query (ours / theirs), their median and the ratio of
  the p95s.
- quality: for each --corpus, real_handbooks.py's database `hb_<name>` (real e5 passage vectors), its chunks
  copied into `lc_chunks` the same way, the question set's real e5 query vectors: file recall@1/@5, MRR and
  section recall@5 of each system, judged by knowledge.evaluation's own matching.

LangChain is used through its documented sync API (its engine runs asyncio in a background thread and an
asyncpg pool): that is how an application calls it, and its figure includes that hop. Results:
benchmarks/results/peer-<machine>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import log, percentiles, print_table  # noqa: E402

LC_TABLE = "lc_chunks"
K = 5
VARIANTS = ["ours_hybrid", "ours_vector", "lc_similarity", "lc_hybrid_default", "lc_hybrid_40"]
BASELINE = None  # --baseline: another checkout's knowledge/retrieval.py, timed as base_hybrid / base_vector


class _Vectors:
    """LangChain wants an Embeddings object; every call here passes the vector, so it must never embed."""

    def embed_query(self, text):  # pragma: no cover - a bug if reached
        raise AssertionError("peer.py passes vectors")

    def embed_documents(self, texts):  # pragma: no cover
        raise AssertionError("peer.py passes vectors")

    async def aembed_query(self, text):  # pragma: no cover
        raise AssertionError("peer.py passes vectors")

    async def aembed_documents(self, texts):  # pragma: no cover
        raise AssertionError("peer.py passes vectors")


class _NoEmbedder:
    name = common.E5_MODEL_NAME
    dim = common.DIM

    def embed_query(self, text):  # pragma: no cover
        raise AssertionError("peer.py passes query_embedding")

    def embed_passages(self, texts):  # pragma: no cover
        raise AssertionError("not used")


def _lc_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def build_lc_table(url: str) -> dict:
    """The database's chunks as a LangChain PGVectorStore table, with LangChain's own indexes."""
    import psycopg
    from langchain_postgres import Column, PGEngine, PGVectorStore
    from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig
    from langchain_postgres.v2.indexes import HNSWIndex

    t0 = time.perf_counter()
    engine = PGEngine.from_connection_string(_lc_url(url))
    try:
        engine.init_vectorstore_table(
            LC_TABLE, common.DIM, overwrite_existing=True,
            metadata_columns=[Column("source", "TEXT"), Column("section", "TEXT"), Column("title", "TEXT")],
            hybrid_search_config=HybridSearchConfig(tsv_column="content_tsv"),
        )
        with psycopg.connect(common.psycopg_conninfo(url), autocommit=True) as conn:
            # What add_texts stores: the text, its vector, to_tsvector(lang, text), the metadata columns.
            conn.execute(
                f"INSERT INTO {LC_TABLE} (langchain_id, content, embedding, content_tsv, source, section, title) "
                "SELECT md5(c.id::text)::uuid, c.text, c.embedding, to_tsvector('pg_catalog.english', c.text), "
                "d.source, c.section_path, d.title FROM chunks c JOIN documents d ON d.id = c.document_id"
            )
        loaded = time.perf_counter() - t0
        store = PGVectorStore.create_sync(engine, _Vectors(), LC_TABLE, metadata_columns=["source", "section", "title"],
                                          hybrid_search_config=HybridSearchConfig(tsv_column="content_tsv"))
        t = time.perf_counter()
        store.apply_vector_index(HNSWIndex())
        hnsw = time.perf_counter() - t
        t = time.perf_counter()
        store.apply_hybrid_search_index()
        gin = time.perf_counter() - t
        with psycopg.connect(common.psycopg_conninfo(url), autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {LC_TABLE}")
    finally:
        engine._run_as_sync(engine.close())
    return {"copy_s": round(loaded, 1), "hnsw_s": round(hnsw, 1), "gin_s": round(gin, 1)}


def _count(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(common.psycopg_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if row[0] else -1


def ensure_corpus(postgres, size: int, vocab, args) -> tuple[str, dict]:
    name = f"peer_{size}"
    if args.rebuild:
        postgres.drop_database(name)
    url = postgres.create_database(name=name, if_missing=True)
    info: dict = {"database": name}
    if _count(url, "chunks") != size:
        postgres.drop_database(name)
        url = postgres.create_database(name=name)
        log(f"{size:,}: bulk-loading the synthetic corpus (once; kept under --home)")
        info["load"] = common.bulk_load(url, size, vocab, seed=args.seed, centroids=args.centroids,
                                        maintenance_work_mem="1GB")
    if _count(url, LC_TABLE) != _count(url, "chunks"):
        log(f"{size:,}: building LangChain's table and indexes")
        info["lc_build"] = build_lc_table(url)
    return url, info


class Peers:
    """The five ways to search one database, each a callable (question, vector) -> list of hits."""

    def __init__(self, url: str) -> None:
        from langchain_postgres import PGEngine, PGVectorStore
        from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig

        from knowledge.background import Background, measure
        from knowledge.db import make_engine, make_sessionmaker

        self.engine = make_engine(url, pool_size=2)
        self.session = make_sessionmaker(self.engine)()
        try:
            from knowledge.embeddings import LocalE5Embedder

            self.background = measure(self.session, LocalE5Embedder())  # as the bot does, once per corpus
        except Exception:  # pragma: no cover - no model: no hub correction (it does not change the cost)
            self.background = Background.none(common.DIM)
        self.session.rollback()
        self.lc_engine = PGEngine.from_connection_string(_lc_url(url))
        meta = ["source", "section", "title"]
        self.lc_plain = PGVectorStore.create_sync(self.lc_engine, _Vectors(), LC_TABLE, metadata_columns=meta)
        self.lc_default = HybridSearchConfig(tsv_column="content_tsv")
        self.lc_40 = HybridSearchConfig(tsv_column="content_tsv", primary_top_k=40, secondary_top_k=40)
        self.lc_hybrid = PGVectorStore.create_sync(self.lc_engine, _Vectors(), LC_TABLE, metadata_columns=meta,
                                                   hybrid_search_config=self.lc_default)

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()
        self.lc_engine._run_as_sync(self.lc_engine.close())

    def ours(self, mode: str, question: str, vector, search=None) -> list:
        if search is None:
            from knowledge.retrieval import search
        try:  # ended as the bot ends a search's session (knowledge.db.reading): COMMIT keeps the prepared statement
            hits = search(self.session, _NoEmbedder(), question, k=K, mode=mode, query_embedding=vector,
                          background=self.background)
            self.session.commit()
            return hits
        finally:
            self.session.rollback()  # a no-op after the commit; after an error, a clean session

    def lc(self, variant: str, question: str, vector) -> list:
        vector = [float(x) for x in vector]
        if variant == "lc_similarity":
            docs = self.lc_plain.similarity_search_by_vector(vector, k=K)
        else:
            config = self.lc_default if variant == "lc_hybrid_default" else self.lc_40
            docs = self.lc_hybrid.similarity_search_by_vector(vector, k=K, hybrid_search_config=config,
                                                              fts_query=question)
        return [types.SimpleNamespace(source=d.metadata["source"], title=d.metadata["title"],
                                      section=d.metadata["section"]) for d in docs]

    def call(self, variant: str, question: str, vector) -> list:
        if variant.startswith("ours_"):
            return self.ours(variant.removeprefix("ours_"), question, vector)
        if variant.startswith("base_"):
            return self.ours(variant.removeprefix("base_"), question, vector, search=BASELINE.search)
        return self.lc(variant, question, vector)


def time_variants(peers: Peers, questions: list[str], vectors, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each variant, interleaved query by query with the order rotating."""
    labels = list(VARIANTS)
    for i in range(warmup):
        for label in labels:
            peers.call(label, questions[i % len(questions)], vectors[i % len(vectors)])
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for n, (q, v) in enumerate(zip(questions, vectors)):
            shift = (n + r) % len(labels)
            for label in labels[shift:] + labels[:shift]:
                t = time.perf_counter()
                peers.call(label, q, v)
                times[label].append((time.perf_counter() - t) * 1000)
    return times


def paired(times: dict[str, list[float]], ours: str, theirs: str) -> dict:
    a, b = np.asarray(times[ours]), np.asarray(times[theirs])
    return {"median_of_paired_ratios": round(float(np.median(a / b)), 3),
            "p95_ratio": round(float(np.percentile(a, 95) / np.percentile(b, 95)), 3),
            "p50_ratio": round(float(np.percentile(a, 50) / np.percentile(b, 50)), 3)}


PAIRS = [("ours_hybrid", "lc_similarity"), ("ours_hybrid", "lc_hybrid_default"), ("ours_hybrid", "lc_hybrid_40"),
         ("ours_vector", "lc_similarity")]
BASE_PAIRS = [("base_hybrid", "lc_similarity"), ("base_hybrid", "lc_hybrid_40"), ("base_vector", "lc_similarity"),
              ("ours_hybrid", "base_hybrid"), ("ours_vector", "base_vector")]


def run_speed(postgres, size: int, vocab, questions, vectors, args) -> dict:
    url, info = ensure_corpus(postgres, size, vocab, args)
    peers = Peers(url)
    try:
        info["loadavg_before"] = common.load_average()
        log(f"{size:,}: {args.rounds} round(s) x {len(questions)} queries x {len(VARIANTS)} variants, interleaved")
        times = time_variants(peers, questions, vectors, args.rounds, args.warmup)
        info["loadavg_after"] = common.load_average()
    finally:
        peers.close()
    info["ms"] = {label: percentiles(t) for label, t in times.items()}
    info["paired"] = {f"{a} / {b}": paired(times, a, b) for a, b in PAIRS + (BASE_PAIRS if BASELINE else [])}
    for label, p in info["ms"].items():
        log(f"{size:,} {label}: {p}")
    return info


def run_quality(postgres, name: str, split: str) -> dict | None:
    from knowledge.embeddings import LocalE5Embedder
    from knowledge.evaluation import is_expected_document, is_expected_section, load_questions

    path = common.ROOT / "benchmarks" / "corpora" / name / f"questions_{split}.jsonl"
    url = postgres.url_for(f"hb_{name}")
    try:
        chunks = _count(url, "chunks")
    except Exception:
        chunks = -1
    if chunks <= 0:
        log(f"{name}: no database hb_{name}: run benchmarks/real_handbooks.py --corpus {name} first")
        return None
    from sqlalchemy import create_engine

    from knowledge import migrate

    engine = create_engine(url)
    try:
        migrate.upgrade(engine)  # as real_handbooks.py would on its next run
    finally:
        engine.dispose()
    if _count(url, LC_TABLE) != chunks:
        log(f"{name}: building LangChain's table from hb_{name}'s {chunks} chunks")
        build_lc_table(url)
    questions = [q for q in load_questions(path) if q.answerable]
    embedder = LocalE5Embedder()
    vectors = [embedder.embed_query(q.question) for q in questions]
    peers = Peers(url)
    out: dict = {"questions": len(questions), "chunks": chunks, "split": split}
    try:
        for label in VARIANTS:
            ranks, sections = [], 0
            for q, v in zip(questions, vectors):
                hits = peers.call(label, q.question, v)
                ranks.append(next((i for i, h in enumerate(hits, 1) if is_expected_document(h, q.document)), None))
                sections += any(is_expected_section(h, q) for h in hits)
            n = max(len(questions), 1)
            out[label] = {"recall@1": round(sum(r == 1 for r in ranks) / n, 3),
                          "recall@5": round(sum(bool(r) for r in ranks) / n, 3),
                          "mrr": round(sum(1 / r for r in ranks if r) / n, 3),
                          "section_recall@5": round(sections / n, 3)}
            log(f"{name} {split} {label}: {out[label]}")
    finally:
        peers.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--corpus", nargs="*", default=["basecamp", "18f"])
    parser.add_argument("--split", choices=["dev", "blind"], default="dev")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "policybot-handbooks")
    parser.add_argument("--rebuild", action="store_true", help="bulk-load the synthetic corpora again")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--centroids", type=int, default=500)
    parser.add_argument("--name", default="peer")
    parser.add_argument("--baseline", type=Path, help="a checkout whose knowledge/retrieval.py is timed alongside")
    parser.add_argument("--shared-buffers", default="1GB",
                        help="the server's shared_buffers for the run (both systems share it; PostgreSQL's default "
                             "is 128MB). Set with ALTER SYSTEM and a restart when it differs")
    args = parser.parse_args(argv)
    if args.baseline:
        import importlib.util

        global BASELINE
        spec = importlib.util.spec_from_file_location("baseline_retrieval", args.baseline / "knowledge" / "retrieval.py")
        BASELINE = sys.modules["baseline_retrieval"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(BASELINE)
        VARIANTS.extend(["base_hybrid", "base_vector"])

    from tests.services import Postgres

    started = time.perf_counter()
    vocab = common.Vocabulary.build()
    gen = common.CorpusGenerator(vocab, seed=args.seed, centroids=args.centroids)
    questions = gen.questions(args.queries)
    vectors = common.query_vectors(args.queries, common.make_centroids(args.centroids, args.seed + 1))
    import langchain_postgres

    results: dict = {
        "benchmark": "peer",
        "command": "python benchmarks/peer.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine(),
        "peer": f"langchain-postgres {getattr(langchain_postgres, '__version__', '?')} PGVectorStore",
        "k": K, "sizes": {}, "quality": {},
    }
    args.home.mkdir(parents=True, exist_ok=True)
    postgres = Postgres(args.home / "pg", keep=True, env=False, say=log).start()
    try:
        _set_shared_buffers(postgres, args.shared_buffers)
        results["server"] = _server_info(postgres.admin_url)
        for size in args.sizes:
            results["sizes"][str(size)] = run_speed(postgres, size, vocab, questions, vectors, args)
            common.write_results(args.name, results)  # kept if a later part fails
        for name in args.corpus:
            q = run_quality(postgres, name, args.split)
            if q:
                results["quality"][name] = q
    finally:
        postgres.close()
    results["wall_s"] = round(time.perf_counter() - started, 1)
    report(results)
    path = common.write_results(args.name, results)
    print(f"\nresults written to {path.relative_to(common.ROOT)}  (wall {results['wall_s']} s)")
    return 0


def _set_shared_buffers(postgres, size: str) -> None:
    """Why: at 100k chunks the two HNSW indexes alone are ~390 MB, and the variants interleave, so with the default
    128 MB buffer pool each query read 180 (LangChain) to 270 (ours) pages back from the OS page cache (EXPLAIN
    BUFFERS), so the figure measured that eviction as much as the query. A server holding its working set is what
    pgvector's documentation asks for; the default stays measurable with --shared-buffers 128MB."""
    import psycopg

    with psycopg.connect(common.psycopg_conninfo(postgres.admin_url), autocommit=True) as conn:
        current = conn.execute("SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]
        wanted = conn.execute("SELECT pg_size_bytes(%s)", (size,)).fetchone()[0]
        if current == wanted:
            return
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
    log(f"shared_buffers {current // 2**20} MB -> {size}: restarting PostgreSQL")
    postgres.restart()


def _server_info(url: str) -> dict:
    import psycopg

    with psycopg.connect(common.psycopg_conninfo(url), autocommit=True) as conn:
        return {"shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],
                "postgres": conn.execute("SHOW server_version").fetchone()[0],
                "pgvector": conn.execute("SELECT default_version FROM pg_available_extensions "
                                         "WHERE name = 'vector'").fetchone()[0]}


def report(results: dict) -> None:
    m, s = results["machine"], results.get("server", {})
    print(f"\nmachine: {m['cpu_model']}, {m['cores']} cores; PostgreSQL {s.get('postgres')}, pgvector "
          f"{s.get('pgvector')}, shared_buffers {s.get('shared_buffers')}; peer: {results['peer']}")
    rows = []
    for size, e in results["sizes"].items():
        for label, p in e["ms"].items():
            rows.append([int(size), label, p["n"], p["p50"], p["p95"], p["p99"], p["mean"]])
    print_table("Search latency, ms per call (wall, client side; k=5; interleaved)",
                ["chunks", "variant", "n", "p50", "p95", "p99", "mean"], rows)
    rows = []
    for size, e in results["sizes"].items():
        for pair, r in e["paired"].items():
            rows.append([int(size), pair, r["median_of_paired_ratios"], r["p50_ratio"], r["p95_ratio"],
                         f"{e['loadavg_before']} -> {e['loadavg_after']}"])
    print_table("Paired ratios (ours / theirs; < 1 means policybot is faster)",
                ["chunks", "pair", "median paired", "p50 ratio", "p95 ratio", "load average"], rows)
    rows = []
    for name, q in results["quality"].items():
        for label in VARIANTS:
            r = q[label]
            rows.append([f"{name} ({q['split']}, {q['questions']} q)", label, r["recall@1"], r["recall@5"], r["mrr"],
                         r["section_recall@5"]])
    if rows:
        print_table("Quality on real handbooks (real e5 vectors; file recall, MRR, section recall@5)",
                    ["corpus", "variant", "file@1", "file@5", "mrr", "section@5"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
