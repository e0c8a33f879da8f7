"""How long `policybot gaps` (and the console's Content gaps page) takes: N unanswered questions grouped.

Questions: the sample handbook's and the holdout's real HR questions (205), made distinct for larger N with a
short context suffix, recorded as refusals; the sample handbook ingested for the nearest document. Measured:
find_gaps cold (every question embedded with the local e5 model) and warm (the process's embedding cache), and
the clustering alone on the same vectors.

    python benchmarks/gaps.py [--sizes 200,1000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import timedelta

from common import ROOT, SAMPLE_HANDBOOK, create_database, load_average, log, machine, start_services, write_results

import numpy as np

from bot import gaps, interactions
from knowledge.db import make_engine, make_sessionmaker
from knowledge.embeddings import LocalE5Embedder
from knowledge.ingest import discover, ingest_file

SUFFIXES = ["", " (I'm in Berlin)", " - asking for my team", " as a contractor?", " in my first year", " please"]


def questions(count: int) -> list[str]:
    base = []
    for path in (SAMPLE_HANDBOOK / "questions.jsonl", ROOT / "benchmarks" / "questions_holdout.jsonl"):
        base += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i in range(count):
        out.append(base[i % len(base)] + SUFFIXES[(i // len(base)) % len(SUFFIXES)]
                   + ("" if i < len(base) * len(SUFFIXES) else f" #{i}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="200,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    embedder = LocalE5Embedder()
    results = {"machine": machine(), "load_average_before": load_average(), "runs": []}
    with start_services(redis=False) as services:
        for size in sizes:
            url = create_database(services, f"gaps{size}")
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            for path, source in discover([SAMPLE_HANDBOOK]):
                ingest_file(sessions, embedder, path, source=source)
            for question in questions(size):
                interactions.record(engine, dict(id=str(uuid.uuid4()), platform="slack", user_id="U1",
                                                 question=question, retrieved=[], answer="-", citations=[],
                                                 grounded=False, cached=False, kind="refusal", timings={}))
            gaps._VECTORS.clear()
            started = time.perf_counter()
            cold = gaps.find_gaps(sessions, embedder, timedelta(days=1))
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            gaps.find_gaps(sessions, embedder, timedelta(days=1))
            warm_s = time.perf_counter() - started
            vectors = np.array([gaps._embedding(embedder, q) for q in questions(size)])
            started = time.perf_counter()
            gaps.cluster(vectors - np.asarray(gaps.direction(embedder)), gaps.DEFAULT_SIMILARITY)
            cluster_s = time.perf_counter() - started
            run = {"questions": size, "groups": len(cold), "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2),
                   "clustering_s": round(cluster_s, 2), "load_average": load_average()}
            log(json.dumps(run))
            results["runs"].append(run)
            engine.dispose()
    print(write_results("gaps", results))


if __name__ == "__main__":
    main()
