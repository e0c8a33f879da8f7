"""Knowledge-base commands: db, ingest, docs, search, reindex, eval retrieval."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from adapters.cli import UserFacingError
from bot.config import Settings
from bot.runtime import Runtime, build_runtime
from knowledge import migrate
from knowledge.db import make_engine
from knowledge.embeddings import EmbeddingMismatch
from knowledge.evaluation import evaluate_retrieval, load_questions
from knowledge.ingest import IngestProgress, discover, ingest_files, list_documents, remove_document
from knowledge.loaders import DocumentError
from knowledge.reindex import reindex
from knowledge.audiences import EVERYONE, AudienceError, parse_audiences, reader_audiences, set_document_audiences
from knowledge.background import measure as measure_background
from knowledge.retrieval import MODES, search


def register(commands) -> None:
    commands.group("db", "database schema (Alembic migrations)")
    commands.add("upgrade", db_upgrade, "apply migrations up to a revision (default head)", group="db").add_argument(
        "revision", nargs="?", default="head"
    )
    commands.add("downgrade", db_downgrade, "revert migrations down to a revision (default base)", group="db").add_argument(
        "revision", nargs="?", default="base"
    )

    p = commands.add("ingest", ingest, "add or replace documents (files or folders)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--title", help="document title (single file only); a document with this title is replaced")
    p.add_argument("--link", help="link shown in citations (single file only)")
    p.add_argument("--audience", metavar="NAME[,NAME]",
                   help="who may read them (default: everyone; a replaced document keeps its audiences)")
    p.add_argument("--json", action="store_true", help="print results as JSON")

    commands.group("docs", "list and remove documents, and set who may read them")
    commands.add("list", docs_list, "list documents", group="docs").add_argument("--json", action="store_true")
    commands.add("remove", docs_remove, "remove a document by id, title or source", group="docs").add_argument(
        "document", metavar="ID|TITLE"
    )
    p = commands.add("audience", docs_audience, "set who may read a document (no re-upload)", group="docs")
    p.add_argument("document", metavar="ID|TITLE")
    p.add_argument("audiences", metavar="NAME[,NAME]", help="e.g. leadership,payroll-de (or everyone)")

    p = commands.add("search", search_command, "show the passages retrieved for a question")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--mode", choices=MODES, default="hybrid")
    p.add_argument("--audience", metavar="NAME[,NAME]", help="search as a member of these audiences "
                                                              "(default: everyone only)")
    p.add_argument("--json", action="store_true")

    commands.add("reindex", reindex_command, "re-embed every chunk with the configured embedding model")

    commands.group("eval", "evaluate retrieval and answers on a question set")
    p = commands.add("retrieval", eval_retrieval, "recall@1, recall@5 and MRR per retrieval mode", group="eval")
    p.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    p.add_argument("--json", action="store_true")


def _runtime(settings: Settings) -> Runtime:
    return build_runtime(settings)


def db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from bot import embedded_services as services

    engine = make_engine(services.database_url(settings))
    migrate.upgrade(engine, args.revision)
    print(f"database at revision {migrate.current_revision(engine)}")
    return 0


def db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    from bot import embedded_services as services

    engine = make_engine(services.database_url(settings))
    migrate.downgrade(engine, args.revision)
    print(f"database at revision {migrate.current_revision(engine) or 'base (empty)'}")
    return 0


def ingest(settings: Settings, args: argparse.Namespace) -> int:
    files = discover(args.paths)
    if not files:
        print("policybot: no supported documents found (pdf, docx, md, txt, html)", file=sys.stderr)
        return 1
    if (args.title or args.link) and len(files) > 1:
        print("policybot: --title and --link apply to a single file; ingest the others separately", file=sys.stderr)
        return 2
    audiences = _audiences(args.audience) if args.audience else None
    runtime = build_runtime(settings, bulk=True)  # every core for local embedding (POLICYBOT_EMBEDDING_BULK_THREADS)
    results, failures = [], 0
    latest: list[IngestProgress] = []
    outcomes = ingest_files(runtime.sessions, runtime.embedder, files, progress=latest.append, title=args.title,
                            link=args.link, max_bytes=settings.max_document_bytes, audiences=audiences)
    for number, (path, source, result) in enumerate(outcomes, 1):
        if isinstance(result, Exception):
            failures += 1
            print(f"[{number}/{len(files)}] {source}: ERROR {result}", file=sys.stderr)
            results.append({"source": source, "status": "error", "error": str(result)})
            continue
        if not args.json:  # the result goes to stdout; with --json the JSON below is the whole of it
            print(f"[{number}/{len(files)}] {source}: {result.status} \"{result.title}\" v{result.version}, "
                  f"{result.chunks} chunks" + ("" if EVERYONE in result.audiences
                                               else f", readable by {','.join(result.audiences)} only")
                  + (_rate(latest[-1]) if len(files) > 1 else ""), flush=True)
        results.append({**result.__dict__})
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    return 1 if failures else 0


def _rate(progress: IngestProgress) -> str:
    eta = progress.eta_s
    left = f", ETA {int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None and progress.files_done < progress.files_total else ""
    return f"  ({progress.passages} passages, {progress.passages_per_s:.1f} passages/s{left})"


def docs_list(settings: Settings, args: argparse.Namespace) -> int:
    documents = list_documents(_runtime(settings).sessions)
    rows = [
        {
            "id": d.id, "title": d.title, "source": d.source, "link": d.link, "type": d.doc_type,
            "version": d.version, "chunks": d.chunk_count, "uploaded_by": d.uploaded_by,
            "audiences": list(d.audiences or (EVERYONE,)),
            "updated_at": d.updated_at.isoformat() if d.updated_at else None,
        }
        for d in documents
    ]
    if args.json:
        print(json.dumps({"documents": rows}, indent=2))
        return 0
    if not rows:
        print("No documents yet. Add some with: policybot ingest PATH")
    for r in rows:
        print(f"{r['id']:>4}  v{r['version']:<3} {r['chunks']:>4} chunks  {r['title']}  ({r['source']})  "
              f"[{','.join(r['audiences'])}]")
    return 0


def _audiences(value: str) -> tuple[str, ...]:
    try:
        return parse_audiences(value)
    except AudienceError as err:
        raise UserFacingError(str(err)) from err


def docs_audience(settings: Settings, args: argparse.Namespace) -> int:
    audiences = _audiences(args.audiences)
    document = set_document_audiences(_runtime(settings).sessions, args.document, audiences)
    if document is None:
        print(f"policybot: no document with id, title or source {args.document!r}; see `policybot docs list`",
              file=sys.stderr)
        return 1
    print(f"\"{document.title}\" is readable by {', '.join(document.audiences)}")
    return 0


def docs_remove(settings: Settings, args: argparse.Namespace) -> int:
    removed = remove_document(_runtime(settings).sessions, args.document)
    if removed is None:
        print(f"policybot: no document with id, title or source {args.document!r}; see `policybot docs list`",
              file=sys.stderr)
        return 1
    print(f"removed \"{removed.title}\" ({removed.source})")
    return 0


def search_command(settings: Settings, args: argparse.Namespace) -> int:
    runtime = _runtime(settings)
    with runtime.sessions() as session:
        # Ranked as the bot ranks them for an answer: hub passages lower (knowledge/background.py).
        passages = search(session, runtime.embedder, args.question, k=args.k, mode=args.mode,
                          background=measure_background(session, runtime.embedder),
                          audiences=reader_audiences(_audiences(args.audience) if args.audience else ()))
    if args.json:
        print(json.dumps({"query": args.question, "results": [p.as_json() for p in passages]}, indent=2,
                         ensure_ascii=False))
        return 0
    if not passages:
        print("No matching passages.")
    for rank, p in enumerate(passages, 1):
        where = p.title + (f" › {p.section}" if p.section else "") + (f" (p. {p.page})" if p.page else "")
        print(f"{rank}. [{p.score:.4f}] {where}\n   {p.text[:300]}\n")
    return 0


def reindex_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot import embedded_services as services
    from bot.runtime import make_embedder
    from knowledge.db import make_sessionmaker

    engine = make_engine(services.database_url(settings))
    migrate.upgrade(engine)
    embedder = make_embedder(settings, bulk=True)  # every core for local embedding

    live = sys.stderr.isatty()  # a progress counter helps a person watching, not a log or a pipe
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if live:
            rate = done / max(time.perf_counter() - started, 1e-9)
            eta = (total - done) / rate if rate else 0
            print(f"\rre-embedded {done}/{total} chunks, {rate:.1f} passages/s, ETA {int(eta // 60)}m{int(eta % 60):02d}s",
                  end="", file=sys.stderr, flush=True)

    count = reindex(make_sessionmaker(engine), embedder, progress)
    if live:
        print(file=sys.stderr)
    print(f"reindexed {count} chunks with {embedder.name} ({embedder.dim} dimensions)")
    return 0


def eval_retrieval(settings: Settings, args: argparse.Namespace) -> int:
    runtime = _runtime(settings)
    report = evaluate_retrieval(runtime.sessions, runtime.embedder, load_questions(args.questions))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['questions']} answerable questions")
    print(f"{'mode':<8} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}")
    for mode, m in report["modes"].items():
        print(f"{mode:<8} {m['recall@1']:>9.3f} {m['recall@5']:>9.3f} {m['mrr']:>7.3f}")
    return 0
