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


class ConceptEmbedder(HashEmbedder):
    """A test embedder whose notion of meaning is known: synonyms share a dimension, other words are noise.

    It lets a test build a case where the vector half and the full-text half disagree in a controlled way.
    """

    CONCEPTS = {"internet": 0, "broadband": 0, "home": 1, "house": 1, "remote": 1, "refund": 2,
                "reimburse": 2, "qx7": 3}

    def __init__(self):
        super().__init__(dim=64, name="test:concepts")

    def _vector(self, text):
        import numpy as np

        vector = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().replace("-", " ").replace(":", " ").replace(".", " ").split():
            concept = next((d for key, d in self.CONCEPTS.items() if word.startswith(key)), None)
            if concept is None:
                vector[4 + int.from_bytes(word.encode()[:4].ljust(4, b"_"), "big") % (self.dim - 4)] += 1.0
            else:
                vector[concept] += 1.0
        return vector / (np.linalg.norm(vector) or 1.0)


# Each half alone ranks a different decoy first; only their fusion finds the target, which is second in
# both: the vector half prefers the synonym-only paraphrase, the full-text half the noisy menu that happens
# to contain every word of the question.
FUSION_DOCS = {
    "target.md": "Scheme QX7 covers broadband for remote staff.",
    "paraphrase.md": "House broadband costs are refunded.",
    "menu.md": "Menu QX7: home-made pasta, internet orders, no reimbursement. Lasagne soup fish curry rice chicken "
               "potatoes pizza dessert salad bread cheese olives.",
    "parking.md": DOCS["parking.md"],
}
QUESTION = "QX7 home internet reimbursement"


def _load(runtime, tmp_path, docs=DOCS, embedder=None):
    for name, body in docs.items():
        ingest_file(runtime.sessions, embedder or runtime.embedder, write(tmp_path / name, body))


def test_hybrid_beats_either_half(runtime, tmp_path):
    embedder = ConceptEmbedder()
    _load(runtime, tmp_path, FUSION_DOCS, embedder)
    with runtime.sessions() as s:
        ranked = {mode: [p.source for p in search(s, embedder, QUESTION, k=3, mode=mode)]
                  for mode in ("vector", "text", "hybrid")}
    assert ranked["vector"][:2] == ["paraphrase.md", "target.md"]
    assert ranked["text"][:2] == ["menu.md", "target.md"]
    assert ranked["hybrid"][0] == "target.md"


def test_hybrid_retrieval_on_the_sample_handbook(runtime):
    """On the real handbook and question set with real embeddings, hybrid beats both halves (MRR)."""
    from knowledge.evaluation import evaluate_retrieval, load_questions
    from knowledge.ingest import discover

    handbook = Path(__file__).resolve().parent.parent / "knowledge" / "sample_handbook"
    for path, source in discover([handbook]):
        ingest_file(runtime.sessions, runtime.embedder, path, source=source)
    report = evaluate_retrieval(runtime.sessions, runtime.embedder, load_questions(handbook / "questions.jsonl"))
    modes = report["modes"]
    assert modes["hybrid"]["recall@5"] >= 0.95
    assert modes["hybrid"]["mrr"] > modes["vector"]["mrr"] and modes["hybrid"]["mrr"] > modes["text"]["mrr"]


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
    assert set(result) == {"document", "section", "page", "text", "score"}
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
