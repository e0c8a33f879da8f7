"""Fine-tuning datasets from interactions and feedback recorded through the real answer core and database."""

import json
import re

import pytest

from adapters.cli import main
from bot.finetune import formats
from bot.finetune.dataset import DatasetTooSmall, build_dataset
from bot.finetune.markers import citation_positions, remap_markers
from bot.finetune.scrub import ScrubReport, scrub
from bot.finetune.validate import validate_file
from bot.prompt import PROMPT_VERSION, PromptSource, build_messages
from knowledge.ingest import ingest_file, remove_document
from tests.helpers import write

LEAVE = """# Leave Policy

## Vacation
Full-time employees receive 25 days of paid vacation per calendar year.
Unused vacation days can be carried over until March 31 of the next year.

## Sick Leave
Tell your manager before 10:00 on the first day of illness.
A doctor's note is needed from the fourth consecutive day of absence.
"""

EXPENSES = """# Expenses Policy

## Coworking spaces
Employees may expense a coworking desk up to 250 EUR per month with their manager's approval.

## Meals
Client meals are reimbursed up to 60 EUR per person. Alcohol is not reimbursed.
"""

TRAVEL = """# Travel Policy

## Trains
Book second class for train journeys under four hours; first class is allowed for longer journeys.
"""

REMOTE = """# Remote Work Policy

## Working from home
You can work from home up to three days per week after your probation period.
"""

REMOTE_V2 = """# Remote Work Policy

## Working from home
You can work from home up to two days per week after your probation period.
"""

BRAND = "Brand voice: warm, plain, direct."
HR = "the People team (people@example.com)"


def _ingest(runtime, tmp_path, name, body):
    return ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / name, body))


def _build(runtime, kind="sft", **options):
    options.setdefault("min_examples", 1)
    return build_dataset(runtime.sessions, kind, BRAND, HR, embedder=runtime.embedder, **options)


def _assistant(record):
    return record["messages"][-1]["content"]


def _question(record):
    return re.search(r"<question>\n(.*?)\n</question>", _user(record), re.S).group(1)


def _user(record):
    messages = record["messages"] if "messages" in record else record["input"]["messages"]
    return next(m["content"] for m in messages if m["role"] == "user")


@pytest.fixture
def recorded(policybot, runtime, tmp_path):
    """Four documents, answers with 👍/👎, a correction, personal data; then one document removed and one changed."""
    for name, body in (("leave.md", LEAVE), ("expenses.md", EXPENSES), ("travel.md", TRAVEL), ("remote.md", REMOTE)):
        _ingest(runtime, tmp_path, name, body)
    ids = {}

    def ask(key, question, user="U1"):
        answer = policybot.answer(question, user, "slack")
        assert answer.kind == "extractive", (question, answer.kind, answer.text)
        ids[key] = answer
        return answer

    # 👍 on a question full of personal data
    ask("vacation", "I am EMP-1234, reach me at jane.doe@acme.com or +44 20 7946 0958: how many vacation days do I get?")
    policybot.feedback(ids["vacation"].interaction_id, "U1", "slack", 1)
    # 👍, then the same question again (a cache hit) with a 👍 from someone else: one example, not two
    ask("coworking", "Can I expense a coworking desk?")
    policybot.feedback(ids["coworking"].interaction_id, "U1", "slack", 1)
    again = ask("coworking_again", "can I expense a coworking desk", user="U2")
    assert again.cached
    policybot.feedback(again.interaction_id, "U2", "slack", 1)
    # 👎 with an admin's correction (with a mention and an employee id to scrub)
    ask("meals", "What is the limit for client meals?")
    policybot.feedback(ids["meals"].interaction_id, "U1", "slack", -1)
    policybot.feedback(ids["meals"].interaction_id, "ADMIN", "slack", -1,
                       correction="Client meals are reimbursed up to 60 EUR per person [1]. "
                                  "Questions? Ask <@U123ABC> or quote EMP-98765.")
    # 👍 on answers from documents that are then removed / changed
    ask("train", "Which class should I book for a train journey?")
    policybot.feedback(ids["train"].interaction_id, "U3", "slack", 1)
    ask("remote", "How many days per week can I work from home?")
    policybot.feedback(ids["remote"].interaction_id, "U3", "slack", 1)
    # not training material: small talk, and a refusal
    hello = policybot.answer("hello", "U4", "slack")
    policybot.feedback(hello.interaction_id, "U4", "slack", 1)

    assert remove_document(runtime.sessions, "travel.md") is not None
    assert _ingest(runtime, tmp_path, "remote.md", REMOTE_V2).version == 2
    return ids


def test_sft_dataset_from_feedback(recorded, runtime):
    dataset = _build(runtime, "sft")
    report = dataset.report
    records = [e.record for e in dataset.examples]
    # vacation 👍, coworking 👍 (twice, deduped), meals correction; train and remote dropped
    assert report["origins"] == {"thumbs_up": 2, "correction": 1}
    assert report["examples"] == 3 and len(records) == 3
    assert report["dropped"]["removed_document"] == 1
    assert report["dropped"]["changed_document"] == 1
    assert report["answers_with_feedback"] == 5  # small talk is not a candidate; the cache hit folds into its origin
    assert report["prompt_version"] == PROMPT_VERSION

    # Each example is the serving prompt: system (rules + brand voice), user (sources + question), assistant.
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert BRAND in record["messages"][0]["content"] and HR in record["messages"][0]["content"]
        assert "<sources>" in _user(record) and "<question>" in _user(record)

    vacation = next(r for r in records if "vacation days" in _question(r))
    assert "25 days" in _assistant(vacation)
    correction = next(r for r in records if "client meals" in _question(r))
    assert _assistant(correction).startswith("Client meals are reimbursed up to 60 EUR per person [")

    # Personal data scrubbed from questions and corrections, and counted
    text = json.dumps(records)
    for secret in ("jane.doe@acme.com", "7946 0958", "EMP-1234", "<@U123ABC>", "EMP-98765"):
        assert secret not in text
    assert "[email]" in _user(vacation) and "[phone]" in _user(vacation) and "[employee id]" in _user(vacation)
    assert "[user]" in _assistant(correction) and "[employee id]" in _assistant(correction)
    assert report["scrubbed"] == {"email": 1, "mention": 1, "employee_id": 2, "phone": 1}
    # The HR mailbox in the system prompt is company information, not personal data
    assert "people@example.com" in records[0]["messages"][0]["content"]


def test_the_target_cites_the_prompt_numbering(recorded, runtime):
    """A stored answer's [1] is its first *cited* source; the training target must use the prompt's numbers."""
    dataset = _build(runtime, "sft")
    for example in dataset.examples:
        record = example.record
        user = _user(record)
        for marker in {int(m) for m in re.findall(r"\[(\d+)\]", _assistant(record))}:
            assert f'<source id="{marker}"' in user
    # the correction's [1] pointed at the answer's first cited source: the meals passage
    correction = next(e.record for e in dataset.examples if e.origin == "correction")
    marker = int(re.search(r"\[(\d+)\]", _assistant(correction)).group(1))
    passage = user_passage(_user(correction), marker)
    assert "60 EUR" in passage


def user_passage(user: str, number: int) -> str:
    return re.search(rf'<source id="{number}"[^>]*>\n(.*?)\n</source>', user, re.S).group(1)


def test_dpo_dataset_from_corrections(recorded, runtime):
    dataset = _build(runtime, "dpo")
    assert dataset.report["origins"] == {"correction": 1}
    record = dataset.examples[0].record
    assert [m["role"] for m in record["input"]["messages"]] == ["system", "user"]
    assert record["preferred_output"][0]["role"] == "assistant"
    assert record["preferred_output"][0]["content"].startswith("Client meals are reimbursed up to 60 EUR")
    assert record["non_preferred_output"][0]["content"] != record["preferred_output"][0]["content"]


def test_export_and_validate_through_the_cli(recorded, runtime, settings, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("POLICYBOT_HOME", str(settings.home))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "sft"
    assert main(["finetune", "export", "--kind", "sft", "--out", str(out), "--min-examples", "2",
                 "--validation-share", "0.5", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["train"] + manifest["validation"] == 3 and manifest["validation"] >= 1
    assert manifest["scrubbed"]["email"] == 1 and manifest["dropped"]["removed_document"] == 1
    assert len(manifest["dataset_hash"]) == 64 and manifest["prompt_version"] == PROMPT_VERSION
    train = formats.read_jsonl(out / "train.jsonl")
    validation = formats.read_jsonl(out / "validation.jsonl")
    assert len(train) == manifest["train"] and len(validation) == manifest["validation"]

    # same data, same split and hash (deterministic)
    again = tmp_path / "again"
    assert main(["finetune", "export", "--kind", "sft", "--out", str(again), "--min-examples", "2",
                 "--validation-share", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset_hash"] == manifest["dataset_hash"]
    assert (again / "train.jsonl").read_text() == (out / "train.jsonl").read_text()

    assert main(["finetune", "validate", str(out / "train.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["kind"] == "sft" and report["examples"] == len(train)
    assert report["estimated_training_tokens"] == report["tokens"]["total"] * 3

    # too little feedback: a clear message, exit code 1
    assert main(["finetune", "export", "--kind", "dpo", "--out", str(tmp_path / "dpo")]) == 1
    err = capsys.readouterr().err
    assert ("Not enough feedback for a dpo dataset: 1 usable example, 1 of them in the training split; "
            "at least 10 training examples needed") in err
    assert "--min-examples" in err


def test_too_small_dataset_message(recorded, runtime):
    with pytest.raises(DatasetTooSmall) as err:
        _build(runtime, "sft", min_examples=10)
    message = str(err.value)
    assert "3 usable examples, " in message and "at least 10 training examples needed" in message
    assert "1 removed document" in message and "1 changed document" in message


def test_corrections_only_from_admins_when_asked(recorded, runtime):
    dataset = _build(runtime, "sft", correction_authors={"SOMEONE_ELSE"})
    assert dataset.report["origins"] == {"thumbs_up": 2}
    assert dataset.report["dropped"]["correction_not_by_admin"] == 1


def test_distractors_are_added_and_markers_follow(recorded, runtime):
    plain = {e.interaction_ids: e.record for e in _build(runtime, "sft").examples}
    dataset = _build(runtime, "sft", distractors=2)
    for example in dataset.examples:
        user = _user(example.record)
        before = _user(plain[example.interaction_ids])
        assert user.count("<source id=") > before.count("<source id=")
        # the cited passage is still the one the marker points to
        target = _assistant(example.record)
        original = _assistant(plain[example.interaction_ids])
        for new, old in zip(re.findall(r"\[(\d+)\]", target), re.findall(r"\[(\d+)\]", original)):
            assert user_passage(user, int(new)) == user_passage(before, int(old))


def test_preference_pairs_from_thumbs_on_the_same_question(llm_policybot, fake_openai, redis_client, tmp_path):
    from tests.fakes.openai_server import Scripted

    runtime = llm_policybot.runtime
    _ingest(runtime, tmp_path, "leave.md", LEAVE)
    _ingest(runtime, tmp_path, "expenses.md", EXPENSES)
    question = "How many vacation days do I get?"
    fake_openai.queue(Scripted(content="You get 25 days of paid vacation a year [2]."))
    good = llm_policybot.answer(question, "U1", "teams")
    assert good.kind == "llm" and good.text.endswith("[1].")  # renumbered in citation order
    redis_client.flushdb()  # a later, different answer to the same question
    fake_openai.queue(Scripted(content="You get 20 days, I think [1]."))
    bad = llm_policybot.answer("how many vacation days do I get", "U2", "teams")
    assert bad.kind == "llm" and not bad.cached
    llm_policybot.feedback(good.interaction_id, "U1", "teams", 1)
    llm_policybot.feedback(bad.interaction_id, "U2", "teams", -1)

    dataset = build_dataset(runtime.sessions, "dpo", BRAND, HR, min_examples=1)
    assert dataset.report["origins"] == {"thumbs_pair": 1}
    record = dataset.examples[0].record
    # markers back in the prompt's numbering: the model wrote [2] and that is what it should learn
    assert record["preferred_output"][0]["content"] == "You get 25 days of paid vacation a year [2]."
    assert record["non_preferred_output"][0]["content"] == "You get 20 days, I think [1]."
    sft = build_dataset(runtime.sessions, "sft", BRAND, HR, min_examples=1)
    assert [_assistant(e.record) for e in sft.examples] == ["You get 25 days of paid vacation a year [2]."]


# ------------------------------------------------------------------------------------------------ units


def test_scrub_kinds_and_company_text_kept():
    report = ScrubReport()
    text = scrub("Mail jane@acme.io or hr@example.com, call 555-123-4567, cc <@U12AB34|jane> and <at>Jo Bloggs</at>; "
                 "I'm E123456. Deadline 2026-03-31, 25 days, 250 EUR.", report, allowed={"hr@example.com"})
    assert text == ("Mail [email] or hr@example.com, call [phone], cc [user] and [user]; I'm [employee id]. "
                    "Deadline 2026-03-31, 25 days, 250 EUR.")
    assert report.as_dict() == {"email": 1, "mention": 2, "employee_id": 1, "phone": 1}


def test_remap_markers_and_citation_positions():
    retrieved = [{"document_id": 1, "section": "A", "page": None, "text": "alpha text"},
                 {"document_id": 2, "section": "B", "page": None, "text": "beta text"},
                 {"document_id": 2, "section": "C", "page": 3, "text": "gamma text"}]
    citations = [{"marker": 1, "document_id": 2, "section": "C", "page": 3, "snippet": "gamma text"},
                 {"marker": 2, "document_id": 1, "section": "A", "page": None, "snippet": "alpha…"}]
    mapping = citation_positions(citations, retrieved)
    assert mapping == {1: 3, 2: 1}
    assert remap_markers("Gamma [1]. Alpha [2]. Both [1, 2]. Bad [7].", mapping) == ("Gamma [3]. Alpha [1]. Both [3][1]. Bad.", 4)


def test_written_dataset_matches_format(tmp_path):
    messages = build_messages("Q?", [PromptSource("T", "S", "Text.")], BRAND, HR)
    path = tmp_path / "x.jsonl"
    formats.write_jsonl(path, [formats.sft_record(messages, "A [1].")] * 2)
    assert validate_file(path).ok


def test_a_correction_its_sources_do_not_support_is_left_out_unless_confirmed(recorded, policybot, runtime, settings,
                                                                              monkeypatch, capsys, tmp_path):
    meals = recorded["meals"].interaction_id
    # [1] is the meals passage; 30 days of vacation is not in it (the passage that says it was not retrieved)
    policybot.feedback(meals, "ADMIN2", "slack", -1, correction="You get 30 days of paid vacation a year [1].")
    dataset = _build(runtime, "sft")
    report = dataset.report
    assert report["origins"] == {"thumbs_up": 2, "correction": 1}  # the admin's supported correction stays
    assert report["dropped"]["unsupported_correction"] == 1
    assert report["flagged_corrections"] == [{"interaction_id": meals, "accepted": False,
                                              "unsupported": ["You get 30 days of paid vacation a year [1]."]}]
    assert not any("30 days" in _assistant(e.record) for e in dataset.examples)

    confirmed = _build(runtime, "sft", accepted_corrections={meals[:8]})
    assert confirmed.report["origins"]["correction"] == 2 and confirmed.report["flagged_corrections"][0]["accepted"]
    assert any("30 days" in _assistant(e.record) for e in confirmed.examples)

    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("POLICYBOT_HOME", str(settings.home))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["finetune", "export", "--kind", "sft", "--out", str(tmp_path / "out"), "--min-examples", "1"]) == 0
    err = capsys.readouterr().err
    assert f"flagged correction on {meals[:8]} (left out)" in err and "--accept-correction" in err
    assert main(["finetune", "export", "--kind", "sft", "--out", str(tmp_path / "out2"), "--min-examples", "1",
                 "--accept-correction", meals]) == 0
    assert "accepted by --accept-correction" in capsys.readouterr().err


def test_the_minimum_counts_the_training_split(recorded, runtime):
    dataset = _build(runtime, "sft", validation_share=0.5)
    train = dataset.report["train"]
    assert dataset.report["validation"] >= 1 and train < dataset.report["examples"]
    with pytest.raises(DatasetTooSmall, match=f"{train} of them in the training split; at least {train + 1} training"):
        _build(runtime, "sft", validation_share=0.5, min_examples=train + 1)
    assert _build(runtime, "sft", validation_share=0.5, min_examples=train).report["train"] == train


def test_unsupported_claims_checks_figures_and_words():
    from bot.finetune.markers import unsupported_claims

    sources = {1: "Client meals are reimbursed up to 60 EUR per person.", 2: "Tell your manager before 10:00."}
    assert unsupported_claims("Meals with clients are reimbursed up to 60 EUR a person [1].", sources) == []
    assert unsupported_claims("Up to 80 EUR per person [1].", sources) == ["Up to 80 EUR per person [1]."]
    assert unsupported_claims("Tell your manager before 10:00 [3].", sources) == ["Tell your manager before 10:00 [3]."]
    assert unsupported_claims("Call your manager first [2]. No marker here.", sources) == []
