"""`finetune validate`: the documented format rules, token counts and limits."""

import json

from adapters.cli import main
from bot.finetune import formats
from bot.finetune.validate import approx_tokens, validate_file

SYSTEM = {"role": "system", "content": "You answer HR questions from the sources."}
USER = {"role": "user", "content": "<sources>...</sources> How many vacation days?"}
ANSWER = {"role": "assistant", "content": "You get 25 days [1]."}


def _write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_valid_sft_file_with_token_report(tmp_path):
    path = _write(tmp_path / "ok.jsonl", [{"messages": [SYSTEM, USER, ANSWER]}] * 12)
    report = validate_file(path, epochs=2)
    assert report.ok and report.kind == "sft" and report.examples == 12 and not report.warnings
    data = report.as_json()
    assert data["tokens"]["min"] == data["tokens"]["max"] == report.tokens[0] > 0
    assert data["estimated_training_tokens"] == 12 * report.tokens[0] * 2


def test_format_errors_name_their_lines(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [
        {"messages": [SYSTEM, USER, ANSWER]},
        '{"messages": [ not json',                                  # line 2
        {"messages": [SYSTEM, USER]},                                 # line 3: no assistant
        {"messages": [SYSTEM, ANSWER]},                               # line 4: no user
        {"messages": [SYSTEM, {"role": "robot", "content": "x"}, ANSWER]},  # line 5: bad role
        {"messages": [SYSTEM, USER, {"role": "assistant", "content": ""}]},  # line 6: empty answer
        {"messages": [SYSTEM, USER, ANSWER, USER]},                   # line 7: ends with the user
        ["not", "an", "object"],                                      # line 8
        {"prompt": "legacy"},                                         # line 9: unknown shape
    ])
    report = validate_file(path)
    assert not report.ok and report.examples == 1
    errors = "\n".join(report.errors)
    assert "line 2: not valid JSON" in errors
    assert "line 3: missing role 'assistant'" in errors
    assert "line 4: missing role 'user'" in errors
    assert "line 5: message 1 has role 'robot'" in errors
    assert "line 6: message 2 (assistant) has no text content" in errors
    assert "line 7: the last message must be the assistant's" in errors
    assert "line 8: not a JSON object" in errors
    assert "line 9: neither a chat example" in errors
    assert "only 1 examples" in report.warnings[0]


def test_over_limit_examples_are_errors(tmp_path):
    long = {"role": "user", "content": "word " * 3000}
    path = _write(tmp_path / "long.jsonl", [{"messages": [SYSTEM, USER, ANSWER]}, {"messages": [SYSTEM, long, ANSWER]}])
    report = validate_file(path, max_tokens=1000)
    assert report.over_limit == [2]
    assert any(e.startswith("line 2: about") and "over the 1,000 limit" in e for e in report.errors)


def test_preference_format_rules(tmp_path):
    good = formats.dpo_record([SYSTEM, USER], "You get 25 days [1].", "Maybe 20?")
    path = _write(tmp_path / "dpo.jsonl", [
        good,
        {**good, "preferred_output": [{"role": "user", "content": "x"}]},     # line 2: wrong role
        {**good, "non_preferred_output": []},                                 # line 3: missing output
        formats.dpo_record([SYSTEM, USER], "Same.", "Same."),                 # line 4: no preference
        {**good, "input": {"messages": [SYSTEM, USER, ANSWER]}},              # line 5: prompt ends with an answer
        {"messages": [SYSTEM, USER, ANSWER]},                                 # line 6: an sft line in a dpo file
    ])
    report = validate_file(path)
    assert report.kind == "dpo" and report.examples == 1
    errors = "\n".join(report.errors)
    assert "line 2: 'preferred_output' must hold role 'assistant'" in errors
    assert "line 3: 'non_preferred_output' must be a list with exactly one assistant message" in errors
    assert "line 4: preferred and non-preferred outputs are the same" in errors
    assert "line 5: input.messages must end with the user's message" in errors
    assert "line 6: a sft example in a dpo file" in errors


def test_trl_conversions():
    sft = formats.to_trl_sft({"messages": [SYSTEM, USER, ANSWER]})
    assert sft == {"prompt": [SYSTEM, USER], "completion": [ANSWER]}
    dpo = formats.to_trl_dpo(formats.dpo_record([SYSTEM, USER], "good", "bad"))
    assert dpo == {"prompt": [SYSTEM, USER], "chosen": [{"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "assistant", "content": "bad"}]}


def test_token_approximation_is_stable():
    assert approx_tokens("") == 0
    text = "Full-time employees receive 25 days of paid vacation per calendar year."
    # mean of chars/4 (18) and words*4/3 (14.7) -> 17
    assert approx_tokens(text) == 17


def test_cli_validate_exit_code_and_text(tmp_path, capsys):
    path = _write(tmp_path / "bad.jsonl", [{"messages": [SYSTEM, USER]}])
    assert main(["finetune", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error: line 1: missing role 'assistant'" in out and "estimated training tokens" in out
