"""Answer quality on real public handbooks (benchmarks/corpora): retrieval, relevance and extractive answers.

    python benchmarks/corpora/materialize.py 18f        # once per corpus (see benchmarks/corpora/README.md)
    python benchmarks/real_handbooks.py --corpus 18f basecamp --split dev
    python benchmarks/real_handbooks.py --corpus 18f basecamp --split blind     # report only, never tune on it

Each corpus is ingested into its own database on an embedded PostgreSQL kept under --home (a persistent data
dir of tests/services.py: the server is left running for the next run), so reruns only re-embed passages whose
text changed (passage vectors are cached on disk by text hash: the e5 model is deterministic, and embedding a
200-page handbook takes minutes on 2 cores). Then, for the question set:
recall of the expected section and file for vector, full-text and hybrid retrieval; and every question through
the answer core (`bot.finetune.evaluation.evaluate_answers`, extractive mode, no cache), with the stage each
failure happened at. Results go to benchmarks/results/real-handbooks-<split>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.extractive import CLOSE_CALL_INTRO  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from knowledge.db import make_engine, make_sessionmaker  # noqa: E402
from knowledge.embeddings import LocalE5Embedder  # noqa: E402
from knowledge.evaluation import evaluate_retrieval, load_questions  # noqa: E402
from knowledge.ingest import discover, ingest_file  # noqa: E402
from tests.services import Postgres, Redis  # noqa: E402

CORPORA = ROOT / "benchmarks" / "corpora"
# The sample handbook written for this project, with its tuning set and its blind holdout.
SAMPLE = {"folder": ROOT / "knowledge" / "sample_handbook",
          "dev": ROOT / "knowledge" / "sample_handbook" / "questions.jsonl",
          "blind": ROOT / "benchmarks" / "questions_holdout.jsonl"}


class CachedEmbedder(LocalE5Embedder):
    """The local e5 model with passage vectors cached on disk, keyed by the exact text."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(threads=int(os.environ.get("POLICYBOT_EMBEDDING_THREADS", "2")))
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)

    def embed_passages(self, texts):
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        out: list[np.ndarray | None] = []
        missing = []
        for i, key in enumerate(keys):
            path = self.cache_dir / f"{key}.npy"
            if path.exists():
                out.append(np.load(path))
            else:
                out.append(None)
                missing.append(i)
        if missing:
            vectors = super().embed_passages([texts[i] for i in missing])
            for i, vector in zip(missing, vectors):
                np.save(self.cache_dir / f"{keys[i]}.npy", vector)
                out[i] = vector
        return np.stack(out) if out else np.zeros((0, self.dim), dtype=np.float32)


def corpus_runtime(postgres: Postgres, name: str, embedder, redis_client, fresh: bool = False) -> Runtime:
    """The corpus's own database `hb_<name>` on the kept server: created once, migrated, reused by later runs."""
    db = f"hb_{name}"
    if fresh:  # loaders or chunking changed: ingest again (unchanged files are otherwise skipped)
        postgres.drop_database(db)
    url = postgres.create_database(name=db, if_missing=True)
    engine = make_engine(url)
    settings = Settings(database_url=url, openai_api_key=None)
    return Runtime(settings=settings, engine=engine, sessions=make_sessionmaker(engine), redis=redis_client,
                   embedder=embedder)


def ingest_corpus(runtime: Runtime, folder: Path) -> dict:
    started = time.perf_counter()
    statuses: dict[str, int] = {}
    for path, source in discover([folder]):
        try:
            result = ingest_file(runtime.sessions, runtime.embedder, path, source=source)
            statuses[result.status] = statuses.get(result.status, 0) + 1
        except Exception as err:  # a page the loaders refuse is part of the figure, not a crash
            statuses["refused"] = statuses.get("refused", 0) + 1
            print(f"  refused {source}: {err}", file=sys.stderr)
    return {"seconds": round(time.perf_counter() - started, 1), **statuses}


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def evaluate(runtime: Runtime, questions_path: Path) -> dict:
    from bot.finetune.evaluation import evaluate_answers

    questions = load_questions(questions_path)
    retrieval = evaluate_retrieval(runtime.sessions, runtime.embedder, questions, k=5)
    report = evaluate_answers(runtime, questions)
    results = report.results
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    stages: dict[str, int] = {}
    for r in results:
        stages[r.failed_at or "ok"] = stages.get(r.failed_at or "ok", 0) + 1
    return {
        "questions": len(questions),
        "retrieval": retrieval["modes"],
        "answers": {
            "answer_key_hit_rate": report.metrics["answer_key_hit_rate"],
            "document_hit_rate": report.metrics["document_hit_rate"],
            "answerable_refused": f"{sum(r.refused for r in answerable)}/{len(answerable)}",
            "answerable_refused_rate": round(sum(r.refused for r in answerable) / max(len(answerable), 1), 3),
            "unanswerable_refused_rate": report.metrics["correct_refusal_rate"],
            # A close call's extractive answer opens by saying it may not be exactly what was asked.
            "answerable_hedged_rate": _rate([r.answer.startswith(CLOSE_CALL_INTRO) for r in answerable]),
            "unanswerable_refused_or_hedged_rate": _rate(
                [r.refused or r.answer.startswith(CLOSE_CALL_INTRO) for r in unanswerable]),
            "failed_at": stages,
        },
        "failures": [r.as_json() for r in results if r.failed_at],
    }


def evaluate_conversations(runtime: Runtime, path: Path) -> dict:
    """Two-turn conversations: is the second turn rewritten exactly when it is a follow-up, and answered right?"""
    import uuid

    from bot.core import PolicyBot
    from knowledge.evaluation import is_expected_document

    bot = PolicyBot(runtime)
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    right, rows = 0, []
    for case in cases:
        conversation = f"eval-{uuid.uuid4().hex[:8]}"
        first, second = case["turns"]
        bot.answer(first, "eval", "eval", conversation)
        answer = bot.answer(second, "eval", "eval", conversation)
        merged_ok = (answer.rewritten_question is not None) == case["second_is_followup"]
        if case.get("document"):
            text = answer.text.lower()
            answered_ok = answer.kind != "refusal" and all(k.lower() in text for k in case.get("answer_key", [])) \
                and any(is_expected_document(s, case["document"]) for s in answer.sources)
        else:
            answered_ok = answer.kind == "refusal"
        right += merged_ok and answered_ok
        rows.append({"turns": case["turns"], "followup": case["second_is_followup"], "merge_ok": merged_ok,
                     "answer_ok": answered_ok, "rewritten": answer.rewritten_question})
    return {"conversations": len(cases), "right": right,
            "merge_decisions_right": sum(r["merge_ok"] for r in rows), "details": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", default=["18f", "basecamp", "sample"])
    parser.add_argument("--split", choices=["dev", "blind"], default="dev")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "policybot-handbooks")
    parser.add_argument("--show", action="store_true", help="print every failure")
    parser.add_argument("--fresh", action="store_true", help="ingest again from scratch (after loader changes)")
    args = parser.parse_args()

    args.home.mkdir(parents=True, exist_ok=True)
    # Persistent data dirs under --home (tests/services.py): the databases survive, the server stays up.
    postgres = Postgres(args.home / "pg", keep=True, env=False).start()
    redis = Redis(args.home, keep=True, env=False).start()
    try:
        return run(args, postgres, redis.client())
    finally:
        redis.close()


def run(args, postgres: Postgres, redis_client) -> int:
    embedder = CachedEmbedder(args.home / "passage-vectors")
    out = {"split": args.split, "loadavg": os.getloadavg(), "corpora": {}}
    for name in args.corpus:
        folder = SAMPLE["folder"] if name == "sample" else CORPORA / "build" / name
        if not folder.exists():
            print(f"{folder} is missing: run benchmarks/corpora/materialize.py {name} first", file=sys.stderr)
            return 2
        runtime = corpus_runtime(postgres, name, embedder, redis_client, fresh=args.fresh)
        ingest = ingest_corpus(runtime, folder)
        questions = SAMPLE[args.split] if name == "sample" else CORPORA / name / f"questions_{args.split}.jsonl"
        if not questions.exists():
            print(f"{name}: ingested {ingest}; no {questions.name} yet", file=sys.stderr)
            continue
        result = evaluate(runtime, questions)
        conversations = CORPORA / name / "conversations.jsonl"
        if conversations.exists() and args.split == "dev":
            result["conversations"] = evaluate_conversations(runtime, conversations)
            c = result["conversations"]
            print(f"  conversations: {c['right']}/{c['conversations']} right, "
                  f"{c['merge_decisions_right']} merge decisions right")
        out["corpora"][name] = {"ingest": ingest, **result}
        print(f"\n== {name} ({args.split}, {result['questions']} questions; ingest {ingest})")
        for mode, m in result["retrieval"].items():
            print(f"  {mode:7s} section@5 {m['section_recall@5']:.3f}  file@5 {m['recall@5']:.3f}  "
                  f"file@1 {m['recall@1']:.3f}  mrr {m['mrr']:.3f}")
        print("  answers", json.dumps(result["answers"]))
        if args.show:
            for f in result["failures"]:
                print(f"   [{f['failed_at']}] {f['question']}\n      -> {f['answer'][:300]!r}")
        runtime.engine.dispose()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"real-handbooks-{args.split}.json").write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
