"""Bulk ingestion against its ceiling, the embedder alone on the same passages, in the same run.

    python benchmarks/ingest.py --corpus sample            # or 18f / basecamp (benchmarks/corpora) or a folder
    python benchmarks/ingest.py --corpus sample --stub-passages 2000

(a) local e5 on every core (`bulk_threads()`, as `policybot ingest` uses): the corpus's passages exactly as
    ingestion builds them (loader, chunker, passage_text), embedded by the embedder alone, one call per document
    as ingestion makes it; then the whole pipeline (`knowledge.ingest.ingest_files`: load, chunk, embed, store,
    term_stats and term_postings) into a fresh database; then the embedder alone again. The ratio is the
    pipeline's passages/s over the mean of the two embedder-alone runs (target >= 0.85): what the pipeline
    costs beyond the embedding it cannot avoid.
(b) the `openai` backend against tests/fakes' local OpenAI-compatible server answering each /embeddings batch
    after --stub-delay-ms (default 50), on a generated handbook of --stub-passages passages (~20 per file,
    1536-dim vectors as text-embedding-3-small's): the embedder alone and the pipeline, with the configured
    concurrency and with 1 batch in flight. Target: 2,000 passages in <= 60 s.

Results: benchmarks/results/ingest-<machine>.json, with the load average.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.common import log, print_table  # noqa: E402

CORPORA = common.ROOT / "benchmarks" / "corpora" / "build"


def corpus_folder(name: str) -> Path:
    if name == "sample":
        return common.SAMPLE_HANDBOOK
    if (CORPORA / name).is_dir():
        return CORPORA / name
    return Path(name)


def passages_per_document(files) -> list[list[str]]:
    """Each document's passages, as ingest_bytes builds them (documents the loaders refuse are left out)."""
    from knowledge.chunking import chunk_document
    from knowledge.ingest import passage_text
    from knowledge.loaders import DocumentError, load_bytes

    out = []
    for path, _ in files:
        try:
            loaded = load_bytes(Path(path).read_bytes(), Path(path).name)
        except DocumentError:
            continue
        drafts = chunk_document(loaded)
        if drafts:
            out.append([passage_text(loaded.title, d.section_path, d.text) for d in drafts])
    return out


def embed_alone(embedder, documents: list[list[str]]) -> dict:
    started = time.perf_counter()
    for texts in documents:
        embedder.embed_passages(texts)
    seconds = time.perf_counter() - started
    count = sum(len(t) for t in documents)
    return {"passages": count, "seconds": round(seconds, 2), "passages_per_s": round(count / seconds, 2)}


def pipeline(services, embedder, files, prefix: str) -> dict:
    from knowledge.db import make_engine, make_sessionmaker
    from knowledge.ingest import ingest_files

    url = common.create_database(services, prefix=prefix)
    engine = make_engine(url, pool_size=4)
    try:
        started = time.perf_counter()
        outcomes = list(ingest_files(make_sessionmaker(engine), embedder, files))
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
        common.drop_database(services, url)
    stored = [r for _, _, r in outcomes if not isinstance(r, Exception)]
    count = sum(r.chunks for r in stored)
    return {"documents": len(stored), "refused": len(outcomes) - len(stored), "passages": count,
            "seconds": round(seconds, 2), "passages_per_s": round(count / seconds, 2)}


def run_local(services, folder: Path, threads: int) -> dict:
    from knowledge.embeddings import LocalE5Embedder
    from knowledge.ingest import discover

    files = discover([folder])
    documents = passages_per_document(files)
    embedder = LocalE5Embedder(threads=threads)
    embedder.embed_passages(["warm up: the model loads once"])
    out: dict = {"corpus": str(folder), "files": len(files), "threads": threads, "loadavg_before": common.load_average()}
    log(f"local e5, {threads} threads: embedder alone on {sum(map(len, documents))} passages")
    out["embedder_alone_1"] = embed_alone(embedder, documents)
    log(f"  {out['embedder_alone_1']}; now the pipeline")
    out["pipeline"] = pipeline(services, embedder, files, "ingest")
    log(f"  {out['pipeline']}; the embedder alone again")
    out["embedder_alone_2"] = embed_alone(embedder, documents)
    ceiling = (out["embedder_alone_1"]["passages_per_s"] + out["embedder_alone_2"]["passages_per_s"]) / 2
    out["ratio"] = round(out["pipeline"]["passages_per_s"] / ceiling, 3)
    out["loadavg_after"] = common.load_average()
    log(f"  ratio {out['ratio']} (load {out['loadavg_before']} -> {out['loadavg_after']})")
    return out


def stub_handbook(folder: Path, passages: int, per_file: int = 20) -> None:
    """A generated handbook: markdown files of `per_file` sections of ~80 words (one passage each)."""
    gen = common.CorpusGenerator(common.Vocabulary.build(), seed=5)
    files = (passages + per_file - 1) // per_file
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        n = min(per_file, passages - f * per_file)
        body = "\n\n".join(f"## Section {s}\n{gen.chunk_text(80)}" for s in range(n))
        (folder / f"policy-{f:04d}.md").write_text(f"# Policy {f}\n\n{body}\n", encoding="utf-8")


def _stub_main(delay_ms: float, dim: int) -> int:
    """Child process: the fake OpenAI-compatible server, so that its work does not take the client's GIL."""
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI(embedding_dim=dim, embedding_delay_s=delay_ms / 1000)

    def stats(fake_, handler, raw):
        return 200, {"max_in_flight": fake_.embedding_max_in_flight}

    def reset(fake_, handler, raw):
        fake_.embedding_max_in_flight = 0
        fake_.requests.clear()
        return 200, {}

    fake.routes[("GET", "/stats")] = stats
    fake.routes[("POST", "/stats/reset")] = reset
    fake.start()
    print(fake.base_url, flush=True)
    while True:
        time.sleep(3600)


def _stub_call(base_url: str, method: str, path: str) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(base_url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def run_stub(services, passages: int, delay_ms: float, concurrency: int) -> dict:
    import subprocess
    import tempfile

    import openai

    from knowledge.embeddings import OpenAIEmbedder
    from knowledge.ingest import discover

    dim = 1536
    child = subprocess.Popen([sys.executable, __file__, "--_stub-server", str(delay_ms), str(dim)],
                             stdout=subprocess.PIPE, text=True, cwd=common.ROOT)
    out: dict = {"passages_requested": passages, "delay_ms": delay_ms, "dim": dim, "runs": {},
                 "stub": "tests/fakes/openai_server.py in its own process", "loadavg_before": common.load_average()}
    try:
        base_url = child.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "handbook"
            stub_handbook(folder, passages)
            files = discover([folder])
            documents = passages_per_document(files)
            for c in (concurrency, 1):
                client = openai.OpenAI(api_key="stub", base_url=base_url, max_retries=0, timeout=30)
                embedder = OpenAIEmbedder(client=client, model="stub-embeddings", batch_size=64, concurrency=c)
                _stub_call(base_url, "POST", "/stats/reset")
                run = {"embedder_alone": embed_alone(embedder, documents)}
                run["pipeline"] = pipeline(services, embedder, files, "ingest_stub")
                run["max_in_flight"] = _stub_call(base_url, "GET", "/stats")["max_in_flight"]
                out["runs"][str(c)] = run
                log(f"openai stub, concurrency {c}: {run}")
    finally:
        child.kill()
        child.wait()
    out["loadavg_after"] = common.load_average()
    return out


def main(argv: list[str] | None = None) -> int:
    from knowledge.embeddings import bulk_threads

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_stub-server"]:
        return _stub_main(float(argv[1]), int(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="sample", help="sample, 18f, basecamp or a folder")
    parser.add_argument("--threads", type=int, default=0, help="local embedding threads (0: every core)")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--stub-passages", type=int, default=2000, help="0 skips the openai-stub part")
    parser.add_argument("--stub-delay-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--name", default="ingest")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict = {"benchmark": "ingest", "command": "python benchmarks/ingest.py " + " ".join(argv),
                     "machine": common.machine()}
    with common.start_services(redis=False) as services:
        if not args.skip_local:
            results["local"] = run_local(services, corpus_folder(args.corpus), bulk_threads(args.threads))
        if args.stub_passages:
            results["openai_stub"] = run_stub(services, args.stub_passages, args.stub_delay_ms, args.concurrency)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    report(results)
    path = common.write_results(args.name, results)
    print(f"\nresults written to {path.relative_to(common.ROOT)}  (wall {results['wall_s']} s)")
    return 0


def report(results: dict) -> None:
    if "local" in results:
        r = results["local"]
        rows = [[name, r[name]["passages"], r[name]["seconds"], r[name]["passages_per_s"]]
                for name in ("embedder_alone_1", "pipeline", "embedder_alone_2")]
        print_table(f"Local e5, {r['threads']} threads, {r['corpus']} ({r['files']} files): pipeline / embedder alone "
                    f"= {r['ratio']} (target >= 0.85); load average {r['loadavg_before']} -> {r['loadavg_after']}",
                    ["run", "passages", "seconds", "passages/s"], rows)
    if "openai_stub" in results:
        s = results["openai_stub"]
        rows = []
        for c, run in s["runs"].items():
            for name in ("embedder_alone", "pipeline"):
                rows.append([c, name, run[name]["passages"], run[name]["seconds"], run[name]["passages_per_s"],
                             run["max_in_flight"]])
        print_table(f"openai backend against a local stub ({s['delay_ms']} ms per batch, {s['dim']} dims); target: "
                    f"2,000 passages <= 60 s; load average {s['loadavg_before']} -> {s['loadavg_after']}",
                    ["concurrency", "run", "passages", "seconds", "passages/s", "max in flight"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
