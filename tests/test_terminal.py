import io
import json

import pytest
from sqlalchemy import text

from adapters import terminal
from adapters.cli import main
from bot.contract import Answer, FeedbackResult
from knowledge.ingest import ingest_file
from tests.helpers import write

LEAVE = "# Leave Policy\n\n## Vacation\nFull-time employees receive 25 days of paid vacation per calendar year.\n"
SICK = "\n## Sick leave\nEmployees may take up to 10 paid sick days per year.\n"


def test_chat_answers_and_records_feedback(policybot, runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))
    inputs = iter(["How many vacation days do I get?", "n", "It should say 25 days", "hello", "quit"])
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


class Script:
    """What the user types, line by line; Ctrl-D (EOFError) once it runs out. Records the prompts shown."""

    def __init__(self, *lines: str) -> None:
        self.lines, self.prompts = list(lines), []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


class EchoBot:
    """A stand-in core for the chat loop's own behaviour: answers every question, records every vote."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        self.votes: list[tuple[str, int, str | None]] = []

    def answer(self, question, user_id, platform, conversation_id, on_text=None) -> Answer:
        self.questions.append(question)
        return Answer(interaction_id=f"i{len(self.questions)}", text=f"answer to {question}", sources=[],
                      grounded=True, cached=False, model="extractive", kind="extractive")

    def feedback(self, interaction_id, user_id, platform, rating, correction=None) -> FeedbackResult:
        self.votes.append((interaction_id, rating, correction))
        return FeedbackResult(True, rating, True, "Thanks!")


def test_a_question_at_the_rating_prompt_is_answered_next(policybot, runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE + SICK))
    script = Script("How many vacation days do I get?", "How many sick days do I get?", "y", "quit")
    out = io.StringIO()
    assert terminal.chat(policybot, read=script, out=out) == 0
    assert "25 days" in out.getvalue() and "10 paid sick days" in out.getvalue()
    with runtime.sessions() as s:
        rated = s.execute(text("SELECT i.question, f.rating FROM feedback f "
                               "JOIN interactions i ON i.id = f.interaction_id")).all()
        asked = s.execute(text("SELECT count(*) FROM interactions")).scalar_one()
    assert asked == 2 and [tuple(r) for r in rated] == [("How many sick days do I get?", 1)]


def test_empty_lines_end_nothing():
    bot, script = EchoBot(), Script("", "   ", "vacation?", "", "", "sick days?", "quit")
    assert terminal.chat(bot, read=script, out=io.StringIO()) == 0
    assert bot.questions == ["vacation?", "sick days?"] and bot.votes == []
    assert script.lines == []  # it was "quit" that ended it, not an empty line


@pytest.mark.parametrize("lines, asked", [
    (["quit"], []), (["EXIT"], []), ([], []),  # at "you>" ([] is Ctrl-D)
    (["vacation?", "quit"], ["vacation?"]), (["vacation?", "exit"], ["vacation?"]), (["vacation?"], ["vacation?"]),
])
def test_quit_exit_and_ctrl_d_end_the_chat(lines, asked):
    bot, script = EchoBot(), Script(*lines)
    assert terminal.chat(bot, read=script, out=io.StringIO()) == 0
    assert bot.questions == asked and bot.votes == []


def test_ratings_and_a_correction_cut_short():
    bot = EchoBot()
    assert terminal.chat(bot, read=Script("a?", "Y", "b?", "n", "it is 25"), out=io.StringIO()) == 0
    assert bot.votes == [("i1", 1, None), ("i2", -1, "it is 25")]
    bot = EchoBot()  # Ctrl-D at "what should it have said?": the 👎 is kept, the chat ends
    assert terminal.chat(bot, read=Script("a?", "n"), out=io.StringIO()) == 0
    assert bot.votes == [("i1", -1, None)]


def test_help_names_the_keys_the_prompt_asks_for():
    script, out = Script("vacation?"), io.StringIO()
    terminal.chat(EchoBot(), read=script, out=out)
    shown = out.getvalue()
    assert shown.startswith(terminal.HELP)
    rate_prompt = script.prompts[1]
    # The keys the prompt offers are the ones the help explains and the loop accepts.
    assert rate_prompt.startswith("helpful? y / n") and "y (helpful) or n (not helpful)" in terminal.HELP
    assert "y" in terminal.UP and "n" in terminal.DOWN
    assert "👍" not in terminal.HELP and "👍" not in rate_prompt  # no keys the prompt does not ask for
    for word in ("quit", "exit", "Ctrl-D", "next question"):
        assert word in terminal.HELP
