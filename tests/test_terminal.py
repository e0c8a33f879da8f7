import io
import json

from sqlalchemy import text

from adapters import terminal
from adapters.cli import main
from knowledge.ingest import ingest_file
from tests.helpers import write

LEAVE = "# Leave Policy\n\n## Vacation\nFull-time employees receive 25 days of paid vacation per calendar year.\n"


def test_chat_answers_and_records_feedback(policybot, runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))
    inputs = iter(["How many vacation days do I get?", "n", "It should say 25 days", "hello", ""])
    out = io.StringIO()
    assert terminal.chat(policybot, read=lambda prompt: next(inputs), out=out) == 0
    shown = out.getvalue()
    assert "25 days" in shown and "Sources:" in shown and "[1] Leave Policy › Vacation (leave.md)" in shown
    with runtime.sessions() as s:
        rating, correction = s.execute(text("SELECT rating, correction FROM feedback")).one()
        conversations = s.execute(text("SELECT count(DISTINCT conversation_id) FROM interactions")).scalar_one()
    assert (rating, correction) == (-1, "It should say 25 days")
    assert conversations == 1  # the whole chat is one conversation (follow-ups work)


def test_ask_json(runtime, tmp_path, monkeypatch, capsys):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))
    monkeypatch.setenv("DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("REDIS_URL", runtime.settings.redis_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["ask", "How many vacation days do I get?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {"id", "answer", "citations", "grounded", "cached", "model", "timings_ms"} <= set(answer)
    assert answer["grounded"] and answer["model"] == "extractive" and "25 days" in answer["answer"]
    assert answer["citations"][0] == {"marker": 1, "document": "Leave Policy", "source": "leave.md",
                                      "section": "Vacation", "page": None, "link": None}
