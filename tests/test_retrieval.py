"""Hybrid retrieval against real PostgreSQL + pgvector with the real e5 embedder."""

import json
from pathlib import Path

from sqlalchemy import text

from adapters.cli import main
from knowledge.ingest import ingest_file
from knowledge.retrieval import query_words, search
from tests.helpers import HashEmbedder, write

DOCS = {
    "menu.md": "# Canteen Menu\n\n## Weekly dishes\nMonday: lentil soup and grilled fish. Tuesday: home-made "
               "lasagne. Wednesday: vegetable curry with rice. Friday: pizza (menu code QX7). The internet ordering "
               "page lists allergens; there is no reimbursement for missed meals.",
    "parking.md": "# Parking\n\n## Office garage\nThe office garage has forty spaces, given out first come first served.",
    "canteen.md": "# Canteen\n\n## Opening hours\nThe canteen serves lunch from 12:00 to 14:00 on working days.",
}


def _load(runtime, tmp_path, docs=DOCS, embedder=None):
    for name, body in docs.items():
        ingest_file(runtime.sessions, embedder or runtime.embedder, write(tmp_path / name, body))


class TopicEmbedder(HashEmbedder):
    """Travel words share one dimension, everything else is noise: the vector half sees 'a travel question'
    and cannot tell Global Entry from any other travel cost, as embeddings blur rare names."""

    TRAVEL = ("travel", "trip", "airline", "lounge", "membership", "flight", "pay", "company", "hotel")

    def __init__(self):
        super().__init__(dim=64, name="test:topics")

    def _vector(self, text):
        import numpy as np

        vector = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            if word.startswith(self.TRAVEL):
                vector[0] += 1.0
            else:
                vector[1 + int.from_bytes(word.encode()[:4].ljust(4, b"_"), "big") % (self.dim - 1)] += 0.3
        return vector / (np.linalg.norm(vector) or 1.0)


RESCUE_DOCS = {
    "travel.md": "# Travel\n\n## Airline lounges\nThe company does not pay for airline lounge membership on a trip."
                 "\n\n## Hotels\nThe company will pay for a standard hotel room on a travel trip."
                 "\n\n## Flights\nBook every flight for a company trip through the travel desk.",
    "security.md": "# Security screening\n\n## Trusted traveller programs\nWe do not reimburse TSA PreCheck or "
                   "Global Entry fees.",
    "parking.md": DOCS["parking.md"],
}


def test_a_rare_exact_term_is_rescued_into_the_top_k(runtime, tmp_path):
    embedder = TopicEmbedder()
    _load(runtime, tmp_path, RESCUE_DOCS, embedder)
    question = "Will the company pay for my Global Entry membership?"
    with runtime.sessions() as s:
        vector = search(s, embedder, question, k=3, mode="vector", per_document=5)
        hybrid = search(s, embedder, question, k=3, per_document=5)
        common = search(s, embedder, "Will the company pay for my hotel membership?", k=3, per_document=5)
    assert "security.md" not in [p.source for p in vector]  # the vector half alone loses it
    assert [p.source for p in hybrid][:2] == [p.source for p in vector][:2]  # the vector's order is kept
    assert hybrid[-1].source == "security.md" and hybrid[-1].rescued and hybrid[-1].text_rank == 1
    assert not any(p.rescued for p in common)  # no rare term in the question: nothing to rescue


def test_hybrid_retrieval_on_the_sample_handbook(runtime):
    """On the real handbook and question set with real embeddings: hybrid (the vector half's order plus the
    rare-term rescue) finds at least as much as the vector half, and beats full text alone."""
    from knowledge.evaluation import evaluate_retrieval, load_questions
    from knowledge.ingest import discover

    handbook = Path(__file__).resolve().parent.parent / "knowledge" / "sample_handbook"
    for path, source in discover([handbook]):
        ingest_file(runtime.sessions, runtime.embedder, path, source=source)
    report = evaluate_retrieval(runtime.sessions, runtime.embedder, load_questions(handbook / "questions.jsonl"))
    modes = report["modes"]
    assert modes["hybrid"]["recall@5"] >= 0.95
    assert modes["hybrid"]["recall@5"] >= modes["vector"]["recall@5"]
    assert modes["hybrid"]["mrr"] >= modes["vector"]["mrr"] and modes["hybrid"]["mrr"] > modes["text"]["mrr"]


def test_results_carry_document_section_and_ranks(runtime, tmp_path):
    _load(runtime, tmp_path)
    with runtime.sessions() as s:
        results = search(s, runtime.embedder, "When is lunch served in the canteen?", k=2)
    first = results[0]
    assert (first.title, first.section, first.source) == ("Canteen", "Opening hours", "canteen.md")
    assert first.vector_rank and first.text_rank and 0 < first.similarity <= 1
    assert results[0].score >= results[1].score


def test_common_terms_are_cut_from_the_text_half(runtime, tmp_path):
    # 'policy' is in every chunk: over the budget it must not make the full-text half match everything.
    for i in range(8):
        ingest_file(runtime.sessions, runtime.embedder,
                    write(tmp_path / f"p{i}.md", f"# Policy {i}\n\nThis policy number {i} covers topic{i}."))
    with runtime.sessions() as s:
        ndoc = s.execute(text("SELECT ndoc FROM term_stats WHERE lexeme = 'polici'")).scalar_one()
        assert ndoc == 8
        bounded = search(s, runtime.embedder, "policy topic3", k=8, mode="text", text_budget=5)
        unbounded = search(s, runtime.embedder, "policy topic3", k=8, mode="text", text_budget=10**6)
    assert [p.source for p in bounded] == ["p3.md"]  # only the rare term survived the cut
    assert len(unbounded) == 8


def test_query_words():
    assert query_words("How many VACATION days, days?") == ["how", "many", "vacation", "days"]


def test_search_cli_json(runtime, tmp_path, monkeypatch, capsys):
    _load(runtime, tmp_path)
    monkeypatch.setenv("DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("REDIS_URL", runtime.settings.redis_url)
    assert main(["search", "When is lunch served?", "--k", "2", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["query"] == "When is lunch served?" and len(output["results"]) == 2
    result = output["results"][0]
    assert set(result) == {"document", "section", "page", "text", "score", "audiences"}
    assert set(result["document"]) == {"id", "title", "source", "link"}
    assert result["document"]["source"] == "canteen.md" and result["section"] == "Opening hours"


def test_ingest_and_docs_cli(runtime, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("REDIS_URL", runtime.settings.redis_url)
    folder = tmp_path / "handbook"
    write(folder / "canteen.md", DOCS["canteen.md"])
    write(folder / "sub" / "parking.md", DOCS["parking.md"])
    (folder / "notes.xlsx").write_bytes(b"ignored: unsupported types in folders are skipped")
    assert main(["ingest", str(folder), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["source"] for r in results) == ["canteen.md", "sub/parking.md"]
    assert main(["docs", "list", "--json"]) == 0
    documents = json.loads(capsys.readouterr().out)["documents"]
    assert {d["title"] for d in documents} == {"Canteen", "Parking"}
    assert main(["docs", "remove", "Parking"]) == 0
    assert main(["docs", "remove", "Parking"]) == 1
    bad = write(tmp_path / "empty.md", "   ")
    assert main(["ingest", str(bad)]) == 1
    assert "empty.md" in capsys.readouterr().err


HUB_TOOLS = """# Travel tools

## Do you have an upcoming trip?
[Yes: Get travel authorization]()

## Booking a hotel
Book hotels through the travel desk at least two weeks ahead; the nightly cap is 150 EUR in most cities.

## Rental cars
Rent the smallest car that fits the team. Fuel is reimbursed with the rental receipt.

## Having trouble
Check out the screen shots
"""


def test_a_hub_passage_close_to_every_question_ranks_lower(runtime, tmp_path):
    from knowledge.background import measure
    from tests.helpers import LEAVE
    from tests.test_answer_core import EXPENSES

    _load(runtime, tmp_path, {"leave.md": LEAVE, "expenses.md": EXPENSES, "tools.md": HUB_TOOLS})
    question = "How many vacation days do I get?"
    with runtime.sessions() as s:
        background = measure(s, runtime.embedder)
        plain = [p.section for p in search(s, runtime.embedder, question, k=3)]
        corrected = [p.section for p in search(s, runtime.embedder, question, k=3, background=background)]
    # "Check out the screen shots" says nothing, so it is near everything: in the top 3 for a vacation question.
    assert plain[0] == "Vacation" and "Having trouble" in plain
    assert corrected[0] == "Vacation" and "Having trouble" not in corrected


def _prepared_runs(session, statement_text):
    """How often this connection ran its prepared search statement (pg_prepared_statements counts plans)."""
    return session.execute(
        text("SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements "
             "WHERE statement = :s"), {"s": statement_text}).scalar_one()


def test_the_search_statement_stays_prepared_across_reading_sessions(runtime, tmp_path):
    # psycopg drops every prepared statement on ROLLBACK; the bot's reads end with COMMIT (knowledge.db.reading),
    # so the statement is planned once and then runs from its cached plan on every later question.
    from knowledge.db import reading
    from knowledge.retrieval import CANDIDATES, statement

    _load(runtime, tmp_path)
    sql = statement(CANDIDATES)
    server_text = _server_text(sql)
    runs = []
    for question in ["When is lunch served?", "Where can I park?", "What is on the menu on Friday?"] * 3:
        with reading(runtime.sessions) as s:
            assert search(s, runtime.embedder, question, k=2)
            runs.append(_prepared_runs(s, server_text))
    assert runs[-1] >= 9 and runs == sorted(runs)  # one pooled connection's statement, never prepared afresh
    with runtime.sessions() as s:  # a plain session ends in ROLLBACK: psycopg forgets its statements
        search(s, runtime.embedder, "Where can I park?", k=2)
    with reading(runtime.sessions) as s:
        search(s, runtime.embedder, "Where can I park?", k=2)
        assert _prepared_runs(s, server_text) < runs[-1]


def _server_text(sql: str) -> str:
    """The statement as the server holds it: psycopg's %(name)s placeholders numbered $1, $2… in order."""
    import re

    names: list[str] = []

    def number(match):
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, sql)


def test_the_restricted_documents_check_reads_the_partial_index(runtime):
    # Migration 0006's predicate must be the text retrieval uses, or the planner cannot use the index.
    from knowledge.retrieval import RESTRICTED_DOCUMENT

    with runtime.sessions() as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(s.execute(text(
            f"EXPLAIN SELECT 1 FROM documents WHERE {RESTRICTED_DOCUMENT} AND NOT audiences && '{{hr}}'::text[]")
        ).scalars())
    assert "documents_restricted" in plan
