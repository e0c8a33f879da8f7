"""Checks a dataset file before it is uploaded or trained on.

Format rules (OpenAI chat and preference JSONL, see `formats`):
- every non-empty line is one JSON object; the kind (sft or dpo) comes from the first valid line and every
  line must be of that kind;
- sft: "messages" is a non-empty list; each message has a role (system, user, assistant) and non-empty string
  content; there is at least one user message and the last message is the assistant's (the target);
- dpo: "input.messages" as above but ending with a user message (no assistant turn); "preferred_output" and
  "non_preferred_output" are each a list of exactly one assistant message with non-empty content, and differ;
- no example is longer than `max_tokens` (approximate, below).

Token counts are an approximation, without tiktoken (it downloads its encodings at run time and the bot may
run without internet): per text, the mean of chars/4 and words×4/3, plus 4 tokens per message. For English
prose this is within about 10-15% of the real BPE count; use it for planning, not billing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bot.finetune.formats import detect_kind

ROLES = {"system", "user", "assistant"}
DEFAULT_MAX_TOKENS = 16_384  # a conservative per-example context for current hosted fine-tuning models
DEFAULT_EPOCHS = 3
MIN_EXAMPLES = 10  # OpenAI refuses a training file with fewer
TOKENS_PER_MESSAGE = 4


def approx_tokens(text: str) -> int:
    """Approximate token count: mean of chars/4 and words×4/3 (no tokenizer download needed)."""
    if not text:
        return 0
    return math.ceil((len(text) / 4 + len(text.split()) * 4 / 3) / 2)


def messages_tokens(messages: list[dict]) -> int:
    return sum(TOKENS_PER_MESSAGE + approx_tokens(str(m.get("content") or "")) for m in messages)


@dataclass
class ValidationReport:
    path: str
    kind: str | None = None
    examples: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: ..."
    warnings: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    max_tokens: int = DEFAULT_MAX_TOKENS
    epochs: int = DEFAULT_EPOCHS
    over_limit: list[int] = field(default_factory=list)  # line numbers

    @property
    def ok(self) -> bool:
        return not self.errors

    def distribution(self) -> dict:
        if not self.tokens:
            return {"min": 0, "p50": 0, "p90": 0, "max": 0, "mean": 0}
        ordered = sorted(self.tokens)

        def pct(q: float) -> int:
            return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

        return {"min": ordered[0], "p50": pct(0.5), "p90": pct(0.9), "max": ordered[-1],
                "mean": round(sum(ordered) / len(ordered), 1)}

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    def as_json(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "ok": self.ok, "examples": self.examples,
            "errors": self.errors, "warnings": self.warnings,
            "tokens": {**self.distribution(), "total": self.total_tokens, "method": "approx: mean(chars/4, words*4/3) + 4/message"},
            "max_tokens": self.max_tokens, "over_limit_lines": self.over_limit,
            "epochs": self.epochs, "estimated_training_tokens": self.total_tokens * self.epochs,
        }


def _check_messages(messages, where: str, errors: list[str]) -> bool:
    if not isinstance(messages, list) or not messages:
        errors.append(f"{where}: 'messages' must be a non-empty list")
        return False
    good = True
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            errors.append(f"{where}: message {index} is not an object")
            good = False
            continue
        role = message.get("role")
        if role not in ROLES:
            errors.append(f"{where}: message {index} has role {role!r}; expected one of {sorted(ROLES)}")
            good = False
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            errors.append(f"{where}: message {index} ({role}) has no text content")
            good = False
    return good


def _check_sft(record: dict, where: str, errors: list[str]) -> list[dict] | None:
    messages = record.get("messages")
    if not _check_messages(messages, where, errors):
        return None
    roles = [m.get("role") for m in messages]
    if "user" not in roles:
        errors.append(f"{where}: missing role 'user'")
        return None
    if "assistant" not in roles:
        errors.append(f"{where}: missing role 'assistant' (the answer to learn)")
        return None
    if roles[-1] != "assistant":
        errors.append(f"{where}: the last message must be the assistant's, not {roles[-1]!r}")
        return None
    return messages


def _check_output(value, name: str, where: str, errors: list[str]) -> str | None:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        errors.append(f"{where}: '{name}' must be a list with exactly one assistant message")
        return None
    message = value[0]
    if message.get("role") != "assistant":
        errors.append(f"{where}: '{name}' must hold role 'assistant', not {message.get('role')!r}")
        return None
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        errors.append(f"{where}: '{name}' has no text content")
        return None
    return content


def _check_dpo(record: dict, where: str, errors: list[str]) -> list[dict] | None:
    source = record.get("input")
    if not isinstance(source, dict):
        errors.append(f"{where}: 'input' must be an object with 'messages'")
        return None
    messages = source.get("messages")
    if not _check_messages(messages, where, errors):
        return None
    roles = [m.get("role") for m in messages]
    if "user" not in roles:
        errors.append(f"{where}: missing role 'user' in input.messages")
        return None
    if roles[-1] != "user":
        errors.append(f"{where}: input.messages must end with the user's message, not {roles[-1]!r}")
        return None
    preferred = _check_output(record.get("preferred_output"), "preferred_output", where, errors)
    rejected = _check_output(record.get("non_preferred_output"), "non_preferred_output", where, errors)
    if preferred is None or rejected is None:
        return None
    if preferred.strip() == rejected.strip():
        errors.append(f"{where}: preferred and non-preferred outputs are the same")
        return None
    # Training sees the prompt with each output; the longer pair bounds the example.
    return messages + [{"role": "assistant", "content": max(preferred, rejected, key=len)}]


def validate_file(path: Path, max_tokens: int = DEFAULT_MAX_TOKENS, epochs: int = DEFAULT_EPOCHS,
                  kind: str | None = None) -> ValidationReport:
    path = Path(path)
    report = ValidationReport(str(path), kind=kind, max_tokens=max_tokens, epochs=epochs)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        report.errors.append(f"cannot read {path}: {err}")
        return report
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except ValueError as err:
            report.errors.append(f"{where}: not valid JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(record, dict):
            report.errors.append(f"{where}: not a JSON object")
            continue
        line_kind = detect_kind(record)
        if line_kind is None:
            report.errors.append(f"{where}: neither a chat example ('messages') nor a preference example ('input')")
            continue
        if report.kind is None:
            report.kind = line_kind
        elif line_kind != report.kind:
            report.errors.append(f"{where}: a {line_kind} example in a {report.kind} file")
            continue
        checked = (_check_sft if line_kind == "sft" else _check_dpo)(record, where, report.errors)
        if checked is None:
            continue
        report.examples += 1
        tokens = messages_tokens(checked)
        report.tokens.append(tokens)
        if tokens > max_tokens:
            report.over_limit.append(number)
            report.errors.append(f"{where}: about {tokens:,} tokens, over the {max_tokens:,} limit")
    if report.examples == 0 and not report.errors:
        report.errors.append("no examples in the file")
    elif 0 < report.examples < MIN_EXAMPLES:
        report.warnings.append(f"only {report.examples} examples; hosted fine-tuning needs at least {MIN_EXAMPLES}")
    return report


def render(report: ValidationReport) -> str:
    data = report.as_json()
    tokens = data["tokens"]
    lines = [
        f"{report.path}: {report.kind or 'unknown'} dataset, {report.examples} valid example(s)"
        + ("" if report.ok else f", {len(report.errors)} error(s)"),
        f"tokens per example (approx.): min {tokens['min']}, p50 {tokens['p50']}, p90 {tokens['p90']}, "
        f"max {tokens['max']}, mean {tokens['mean']}; limit {report.max_tokens:,}",
        f"estimated training tokens: {report.total_tokens:,} × {report.epochs} epochs = "
        f"{data['estimated_training_tokens']:,} (approximation: mean of chars/4 and words×4/3)",
    ]
    lines += [f"error: {e}" for e in report.errors[:50]]
    if len(report.errors) > 50:
        lines.append(f"... and {len(report.errors) - 50} more errors")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
