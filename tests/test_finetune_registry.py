"""Model registry: answer evaluation, the promotion gate, promotion taking effect on the next question, rollback;
and feedback stats."""

import json

import pytest

from adapters.cli import main
from bot.finetune import registry
from bot.finetune.evaluation import compare, evaluate_answers, promote
from bot.finetune.registry import RegistryError
from bot.finetune.stats import feedback_stats
from knowledge.evaluation import load_questions
from knowledge.ingest import ingest_file
from tests.fakes.openai_server import _chat
from tests.helpers import write

LEAVE = """# Leave Policy

## Vacation
Full-time employees receive 25 days of paid vacation per calendar year.
Unused vacation days can be carried over until March 31 of the next year.
"""

EXPENSES = """# Expenses Policy

## Coworking spaces
Employees may expense a coworking desk up to 250 EUR per month with their manager's approval.
"""

QUESTIONS = [
    {"question": "How many vacation days do I get?", "document": "leave.md", "answer_key": ["25 days"]},
    {"question": "Can I expense a coworking desk?", "document": "expenses.md", "answer_key": ["250 EUR"]},
    {"question": "Which team won the football match last night?", "document": None},
]

GOOD = {"citation_validity": 1.0, "grounded_rate": 1.0, "correct_refusal_rate": 1.0, "answer_key_hit_rate": 1.0,
        "document_hit_rate": 1.0, "fallbacks": 0, "errors": 0, "question_set": "qs1"}


def _load(runtime, tmp_path):
    for name, body in (("leave.md", LEAVE), ("expenses.md", EXPENSES)):
        ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / name, body))


def _questions(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    return path


def _model_aware_chat(fake, handler, raw):
    """The candidate 'ft:bad' cites sources that do not exist; every other model answers like the default fake."""
    body = json.loads(raw)
    if body["model"] == "ft:bad":
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "You get 30 days [7]."}}]}
    return _chat(fake, handler, raw)


def _candidate(runtime, model_id, metrics=None, status="candidate"):
    return registry.create(runtime.sessions, provider="openai", model_id=model_id, base_model="base-model",
                           job_id=f"ftjob-{model_id}", status=status, metrics=metrics or {})


@pytest.fixture
def cli_env(monkeypatch):
    def apply(settings):
        for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                            ("POLICYBOT_HOME", str(settings.home)), ("OPENAI_API_KEY", settings.openai_api_key),
                            ("OPENAI_BASE_URL", settings.openai_base_url), ("POLICYBOT_CHAT_MODEL", settings.chat_model),
                            ("POLICYBOT_LLM_RETRIES", "0")):
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
    return apply


def test_eval_answers_metrics(llm_policybot, fake_openai, tmp_path):
    runtime = llm_policybot.runtime
    _load(runtime, tmp_path)
    fake_openai.routes[("POST", "/chat/completions")] = _model_aware_chat
    questions = load_questions(_questions(tmp_path))

    good = evaluate_answers(runtime, questions)
    assert good.model == "base-model"
    m = good.metrics
    assert (m["citation_validity"], m["grounded_rate"], m["correct_refusal_rate"], m["answer_key_hit_rate"],
            m["document_hit_rate"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert m["questions"] == 3 and m["answerable"] == 2 and m["unanswerable"] == 1
    assert {r["platform"] for r in _interactions(runtime)} == {"eval"}

    bad = evaluate_answers(runtime, questions, model="ft:bad")
    b = bad.metrics
    assert b["citation_validity"] == 0.0 and b["grounded_rate"] == 0.0 and b["fallbacks"] == 2
    assert b["correct_refusal_rate"] == 1.0 and b["question_set"] == m["question_set"]
    assert bad.model == "ft:bad" and {r.model for r in bad.results} == {"ft:bad"}
    assert {r.answered_by for r in bad.results if r.answerable} == {"extractive (fallback)"}
    assert b["fallback_reasons"] == {"no_citation": 2} and b["replies_with_markers"] == 2
    assert [r["model"] for r in fake_openai.chat_requests()][-1] == "ft:bad"
    drops = compare(b, m)
    assert {d.metric for d in drops} == {"citation_validity", "grounded_rate", "fallbacks", "answer_key_hit_rate",
                                         "document_hit_rate"}


def _interactions(runtime):
    from sqlalchemy import text

    with runtime.sessions() as s:
        return [dict(r._mapping) for r in s.execute(text("SELECT platform, user_id, model FROM interactions"))]


def test_gate_refuses_a_worse_candidate_and_force_promotes(llm_policybot, fake_openai, tmp_path, cli_env, capsys):
    runtime = llm_policybot.runtime
    _load(runtime, tmp_path)
    fake_openai.routes[("POST", "/chat/completions")] = _model_aware_chat
    bad = _candidate(runtime, "ft:bad")
    cli_env(runtime.settings)

    # eval answers --model stores the metrics on the model version (and on the base model's baseline row)
    assert main(["eval", "answers", str(_questions(tmp_path)), "--model", str(bad.id), "--json"]) == 0
    stored = registry.get(runtime.sessions, bad.id).metrics
    assert stored["citation_validity"] == 0.0 and stored["questions_file"].endswith("questions.jsonl")
    assert main(["eval", "answers", str(_questions(tmp_path)), "--model", "base"]) == 0
    assert "citation validity    1.000" in capsys.readouterr().out

    assert main(["model", "promote", str(bad.id)]) == 1
    err = capsys.readouterr().err
    assert "Not promoted" in err and "scores worse than the base model base-model" in err
    assert "citation_validity dropped from 1.000 to 0.000 (-1.000, -100.0 points)" in err
    assert "grounded_rate dropped from 1.000 to 0.000" in err and "--force" in err
    assert registry.active(runtime.sessions) is None

    # the same through --questions (evaluates both now), then --force
    outcome = promote(runtime, "ft:bad", questions_path=_questions(tmp_path))
    assert not outcome.promoted and {d.metric for d in outcome.drops} == {
        "citation_validity", "grounded_rate", "fallbacks", "answer_key_hit_rate", "document_hit_rate"}
    assert main(["model", "promote", "ft:bad", "--force"]) == 0
    out = capsys.readouterr().out
    assert "Promoted #" in out and "Forced past the gate" in out
    assert registry.active(runtime.sessions).model_id == "ft:bad"


def test_promotion_takes_effect_on_the_next_question_and_rollback(llm_policybot, fake_openai, tmp_path):
    runtime = llm_policybot.runtime
    _load(runtime, tmp_path)
    registry.baseline(runtime.sessions, "base-model", create_missing=True)
    registry.set_metrics(runtime.sessions, registry.baseline(runtime.sessions, "base-model").id,
                         {**GOOD, "grounded_rate": 0.9})
    first = _candidate(runtime, "ft:brand-1", GOOD)
    second = _candidate(runtime, "ft:brand-2", GOOD)

    def model_for(question):
        before = len(fake_openai.chat_requests())
        answer = llm_policybot.answer(question, "U1", "slack")
        assert len(fake_openai.chat_requests()) == before + 1, "answered from the cache"
        return fake_openai.chat_requests()[-1]["model"], answer

    assert model_for("How many vacation days do I get?")[0] == "base-model"
    outcome = promote(runtime, str(first.id))
    assert outcome.promoted, outcome.message
    # the same PolicyBot, no restart: the next question (even the same one) goes to the promoted model
    model, answer = model_for("How many vacation days do I get?")
    assert model == "ft:brand-1" and answer.model == "ft:brand-1" and not answer.cached

    assert promote(runtime, "ft:brand-2").promoted
    assert model_for("Can I expense a coworking desk?")[0] == "ft:brand-2"
    assert registry.get(runtime.sessions, first.id).status == "retired"

    back = registry.rollback(runtime.sessions)  # brand-2 -> brand-1
    assert back.rolled_back.model_id == "ft:brand-2" and back.now_active.model_id == "ft:brand-1"
    assert model_for("Can I carry over vacation days?")[0] == "ft:brand-1"
    back = registry.rollback(runtime.sessions)  # brand-1 -> the base model
    assert back.now_active is None
    assert model_for("Until when can unused vacation be carried over?")[0] == "base-model"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(runtime.sessions)
    statuses = {m.model_id: m.status for m in registry.list_versions(runtime.sessions)}
    assert statuses == {"base-model": "baseline", "ft:brand-1": "rolled_back", "ft:brand-2": "rolled_back"}
    history = [h["event"] for h in registry.get(runtime.sessions, first.id).details["history"]]
    assert history == ["candidate", "active", "retired", "active", "rolled_back"]

    # a rolled-back model can be promoted again
    assert promote(runtime, "ft:brand-2").promoted


def test_gate_needs_comparable_metrics(runtime):
    no_metrics = _candidate(runtime, "ft:new")
    outcome = promote(runtime, str(no_metrics.id))
    assert not outcome.promoted and "has no evaluation metrics" in outcome.message
    measured = _candidate(runtime, "ft:measured", GOOD)
    outcome = promote(runtime, "ft:measured")
    assert not outcome.promoted and "base model" in outcome.message and "no evaluation metrics" in outcome.message
    baseline = registry.baseline(runtime.sessions, runtime.settings.chat_model, create_missing=True)
    registry.set_metrics(runtime.sessions, baseline.id, {**GOOD, "question_set": "other"})
    outcome = promote(runtime, "ft:measured")
    assert not outcome.promoted and "different question sets" in outcome.message
    registry.set_metrics(runtime.sessions, baseline.id, {**GOOD, "answer_key_hit_rate": 0.98})
    outcome = promote(runtime, "ft:measured")
    assert outcome.promoted and measured.id == outcome.candidate.id
    with pytest.raises(RegistryError, match="already active"):
        registry.activate(runtime.sessions, measured.id)
    training = _candidate(runtime, "", status="training")
    with pytest.raises(RegistryError, match="cannot be promoted"):
        promote(runtime, str(training.id), force=True)
    with pytest.raises(RegistryError, match="no model version or job"):
        promote(runtime, "nope")


def test_tolerance_allows_small_drops(runtime):
    baseline = registry.baseline(runtime.sessions, runtime.settings.chat_model, create_missing=True)
    registry.set_metrics(runtime.sessions, baseline.id, GOOD)
    _candidate(runtime, "ft:close", {**GOOD, "grounded_rate": 0.97})
    refused = promote(runtime, "ft:close")
    assert not refused.promoted and "grounded_rate dropped from 1.000 to 0.970" in refused.message
    assert promote(runtime, "ft:close", tolerance=0.05).promoted


def test_model_list_and_rollback_cli(runtime, settings, cli_env, capsys):
    cli_env(settings)
    _candidate(runtime, "ft:one", GOOD)
    registry.activate(runtime.sessions, registry.get(runtime.sessions, "ft:one").id)
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "answering now: ft:one" in out and "* #" in out
    assert main(["model", "rollback"]) == 0
    assert f"the base model {settings.chat_model} answers" in capsys.readouterr().out
    assert main(["model", "rollback"]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert main(["model", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["active"] is None and data["models"][0]["status"] == "rolled_back"


def test_feedback_stats(policybot, runtime, settings, tmp_path, cli_env, capsys):
    _load(runtime, tmp_path)
    vacation = policybot.answer("How many vacation days do I get?", "U1", "slack")
    desk = policybot.answer("Can I expense a coworking desk?", "U1", "slack")
    desk_again = policybot.answer("can i expense a coworking desk", "U2", "slack")  # cached copy
    refusal = policybot.answer("Which team won the football match last night?", "U3", "slack")
    policybot.feedback(vacation.interaction_id, "U1", "slack", 1)
    policybot.feedback(vacation.interaction_id, "U2", "slack", 1)
    policybot.feedback(desk.interaction_id, "U1", "slack", -1, comment="too vague")
    policybot.feedback(desk_again.interaction_id, "U2", "slack", -1, correction="Up to 250 EUR a month [1].")
    policybot.feedback(refusal.interaction_id, "U3", "slack", -1)

    stats = feedback_stats(runtime.sessions)
    assert stats["totals"] == {"up": 2, "down": 3, "corrections": 1}
    by_document = {row["document"]: (row["up"], row["down"]) for row in stats["by_document"]}
    assert by_document["Leave Policy"][0] == 2 and by_document["Expenses Policy"][1] == 2
    assert by_document["(no document)"] == (0, 1)
    assert sum(w["up"] + w["down"] for w in stats["by_week"]) == 5
    assert stats["by_week"][0]["week"].count("-W") == 1
    worst = stats["most_disliked"][0]
    assert worst["down"] == 2 and worst["question"].lower().startswith("can i expense")  # cached copy grouped
    assert worst["corrections"] == 1 and worst["comments"] == ["too vague"]

    cli_env(settings)
    assert main(["feedback", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["down"] == 3
    assert main(["feedback", "stats"]) == 0
    out = capsys.readouterr().out
    assert "By document:" in out and "Answers with the most 👎:" in out and "too vague" in out
