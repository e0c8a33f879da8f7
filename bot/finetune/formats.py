"""The two dataset formats on disk, and the conversions the local trainer needs.

- Supervised (SFT), OpenAI chat JSONL, one example a line:
      {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", "content": ...}]}
- Preference (DPO), OpenAI preference JSONL:
      {"input": {"messages": [system, user]},
       "preferred_output": [{"role": "assistant", "content": ...}],
       "non_preferred_output": [{"role": "assistant", "content": ...}]}

TRL reads neither shape directly: its SFTTrainer takes conversational prompt-completion rows
({"prompt": [system, user], "completion": [assistant]}, loss on the completion only) and its DPOTrainer
conversational preference rows ({"prompt": [...], "chosen": [assistant], "rejected": [assistant]}).
`to_trl_sft` and `to_trl_dpo` convert.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

KINDS = ("sft", "dpo")
TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
MANIFEST_FILE = "manifest.json"


def sft_record(prompt: list[dict], answer: str) -> dict:
    return {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def dpo_record(prompt: list[dict], preferred: str, rejected: str) -> dict:
    return {
        "input": {"messages": list(prompt)},
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def canonical(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def detect_kind(record: dict) -> str | None:
    if isinstance(record, dict):
        if "messages" in record:
            return "sft"
        if "input" in record or "preferred_output" in record:
            return "dpo"
    return None


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    count = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_manifest(dataset_dir: Path) -> dict:
    path = Path(dataset_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: point at a folder written by `policybot finetune export`")
    return json.loads(path.read_text(encoding="utf-8"))


def to_trl_sft(record: dict) -> dict:
    """OpenAI chat example -> TRL conversational prompt-completion (the last assistant turn is the completion)."""
    messages = record["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def to_trl_dpo(record: dict) -> dict:
    """OpenAI preference example -> TRL conversational preference row (prompt / chosen / rejected)."""
    return {
        "prompt": record["input"]["messages"],
        "chosen": record["preferred_output"][:1],
        "rejected": record["non_preferred_output"][:1],
    }
