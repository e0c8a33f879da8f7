"""Fine-tuning datasets from recorded interactions and their feedback.

Every example is written by the prompt builder that serves answers (`bot.prompt.build_messages`): the brand
voice guide, the exact passages the answer was given (the interaction's `retrieved` snapshot) and the
standalone question. The model so learns to answer from numbered sources and cite them.

- Supervised (sft): 👍 answers, and admins' corrections of 👎 answers (the correction is the target).
- Preference (dpo): a 👎 answer and its correction (preferred = correction); a 👍 and a 👎 answer to the same
  question (normalized) given the same sources.

Citation markers. A stored answer's markers are renumbered in citation order ([1] = first cited source), and a
correction is written against that numbering, but the prompt numbers sources in retrieval order. Targets are
mapped back to the prompt's numbering through the stored citations, so the model learns the numbers it must
actually write.

Only llm / extractive / fallback answers count (not small talk, refusals or errors); a cached answer has no
snapshot of its own and is folded into the interaction that produced it (one vote per user, the latest). An
example is dropped when a document the answer cited (its sources) was since removed or changed (snapshot
document id + version against the documents table); retrieved passages it did not cite whose document was
removed or changed are left out of the prompt instead. Personal data in questions, answers and corrections is
scrubbed (see `scrub`). The train/validation split is a hash of the example, so an example stays on its side as
the set grows.

A correction is checked against the passages its [n] markers cite (`markers.unsupported_claims`: every figure,
and a third of the content words, must be in them). One that they do not support is flagged in the manifest
(`flagged_corrections`) and left out, unless an admin confirms it: `finetune export --accept-correction
INTERACTION_ID` (repeatable; the id, or its first 8 characters, as the manifest and the command's output show).

`min_examples` counts the training split: hosted fine-tuning refuses a training file with fewer than 10.

The steps, one module each: `candidates` (the answers with feedback, read from the database), `markers` (citation
numbers from display order to prompt order), `examples` (prompts and targets, sft and dpo), and here the filtering,
the split and the files.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from bot.finetune import formats
from bot.finetune.candidates import Candidate, current_documents, document_audiences, load_candidates
from bot.finetune.examples import Example, ExampleBuilder, dpo_examples, sft_examples
from bot.finetune.markers import prompt_sources, unsupported_claims
from bot.finetune.scrub import ScrubReport
from bot.prompt import PROMPT_VERSION
from knowledge.audiences import EVERYONE, reader_audiences

DEFAULT_MIN_EXAMPLES = 10
DEFAULT_VALIDATION_SHARE = 0.1


class DatasetTooSmall(ValueError):
    """Too little usable feedback for a dataset; the message says what there is and what is needed."""


def _is_validation(digest: str, share: float) -> bool:
    return int(digest[:8], 16) / 0xFFFFFFFF < share


@dataclass
class Dataset:
    kind: str
    train: list[Example]
    validation: list[Example]
    report: dict
    dataset_hash: str

    @property
    def examples(self) -> list[Example]:
        return self.train + self.validation


def build_dataset(
    sessions: sessionmaker,
    kind: str,
    brand_voice: str,
    hr_contact: str,
    *,
    embedder=None,
    distractors: int = 0,
    min_examples: int = DEFAULT_MIN_EXAMPLES,
    validation_share: float = DEFAULT_VALIDATION_SHARE,
    correction_authors: set[str] | None = None,
    accepted_corrections: set[str] | None = None,
    audiences: Sequence[str] = (EVERYONE,),
) -> Dataset:
    """Build an sft or dpo dataset. Raises DatasetTooSmall when fewer than `min_examples` training examples remain.

    correction_authors: whose corrections count (e.g. the admins); None accepts anyone's.
    accepted_corrections: interaction ids (or 8+ character prefixes) whose flagged corrections an admin confirmed.
    audiences: whose material the dataset may hold (default `everyone` only): an example with a passage of
    another audience is left out (bot/finetune/examples.py)."""
    if kind not in formats.KINDS:
        raise ValueError(f"kind must be one of {formats.KINDS}, not {kind!r}")
    candidates, skipped = load_candidates(sessions, correction_authors)
    documents = current_documents(sessions)
    readers = reader_audiences(audiences)
    builder = ExampleBuilder(brand_voice, hr_contact, documents, sessions, embedder, distractors,
                             audiences=document_audiences(sessions), readers=readers)
    made = sft_examples(candidates, builder) if kind == "sft" else dpo_examples(candidates, builder)

    dropped: Counter = Counter(skipped) + builder.skipped
    kept: list[Example] = []
    seen: set[str] = set()
    flagged: list[dict] = []
    accepted = {a.strip() for a in (accepted_corrections or ()) if a.strip()}
    for example in made:
        stale = _stale(example.documents, documents)
        if stale:
            dropped[stale] += 1
            continue
        claims = unsupported_claims(*_target_and_sources(example)) if example.origin == "correction" else []
        if claims:
            interaction = example.interaction_ids[0]
            confirmed = any(interaction == a or (len(a) >= 8 and interaction.startswith(a)) for a in accepted)
            flagged.append({"interaction_id": interaction, "unsupported": claims, "accepted": confirmed})
            if not confirmed:
                dropped["unsupported_correction"] += 1
                continue
        digest = example.hash
        if digest in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(digest)
        kept.append(example)

    scrubbed = ScrubReport()
    for example in kept:
        scrubbed.counts.update(dict(example.scrubbed))
    origins = Counter(e.origin for e in kept)

    train = [e for e in kept if not _is_validation(e.hash, validation_share)]
    validation = [e for e in kept if _is_validation(e.hash, validation_share)]
    if not validation and validation_share > 0 and len(kept) >= 5:
        # a small set can hash entirely to train: keep one deterministic example aside
        smallest = min(train, key=lambda e: e.hash)
        train.remove(smallest)
        validation.append(smallest)
    if not train and validation:  # and never an empty training file
        largest = max(validation, key=lambda e: e.hash)
        validation.remove(largest)
        train.append(largest)
    if len(train) < min_examples:
        raise DatasetTooSmall(_too_small_message(kind, len(kept), len(train), min_examples, candidates, origins,
                                                 dropped))
    dataset_hash = hashlib.sha256(
        "\n".join(["train:" + e.hash for e in sorted(train, key=lambda e: e.hash)]
                  + ["validation:" + e.hash for e in sorted(validation, key=lambda e: e.hash)]).encode()
    ).hexdigest()
    report = {
        "kind": kind,
        "prompt_version": PROMPT_VERSION,
        "examples": len(kept),
        "train": len(train),
        "validation": len(validation),
        "origins": dict(origins),
        "answers_with_feedback": len(candidates),
        "dropped": dict(dropped),
        "scrubbed": scrubbed.as_dict(),
        "targets_without_citation": sum(1 for e in kept if e.uncited_target),
        "flagged_corrections": flagged,
        "stale_passages_removed": builder.stale_passages_removed,
        "distractors": distractors,
        "validation_share": validation_share,
        "audiences": list(readers),
        "corrections_from": "anyone" if correction_authors is None else f"admins ({len(correction_authors)})",
        "brand_voice_sha256": hashlib.sha256(brand_voice.encode()).hexdigest(),
    }
    return Dataset(kind, train, validation, report, dataset_hash)


def _stale(documents: frozenset[tuple[int, int]], current: dict[int, int]) -> str | None:
    for document_id, version in documents:
        if document_id not in current:
            return "removed_document"
    for document_id, version in documents:
        if current[document_id] != version:
            return "changed_document"
    return None


def _target_and_sources(example: Example) -> tuple[str, dict[int, str]]:
    """The example's target (a correction: the preferred output for dpo) and its prompt's passages by number."""
    record = example.record
    if "messages" in record:
        messages, target = record["messages"][:-1], record["messages"][-1]["content"]
    else:
        messages, target = record["input"]["messages"], record["preferred_output"][0]["content"]
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return target, prompt_sources(user)


def _too_small_message(kind: str, count: int, train: int, minimum: int, candidates: list[Candidate],
                       origins: Counter, dropped: Counter) -> str:
    ups = sum(1 for c in candidates if c.verdict > 0)
    downs = sum(1 for c in candidates if c.verdict < 0)
    corrections = sum(1 for c in candidates for v in c.votes.values() if v.rating < 0 and v.correction)
    what = ("👍 answers and corrections of 👎 answers" if kind == "sft"
            else "👎 answers with a correction, or 👍 and 👎 answers to the same question")
    parts = [
        f"Not enough feedback for a {kind} dataset: {count} usable example{'s' if count != 1 else ''}, "
        f"{train} of them in the training split; at least {minimum} training examples needed.",
        f"Found {len(candidates)} answers with feedback ({ups} liked, {downs} disliked, {corrections} corrections).",
    ]
    if dropped:
        parts.append("Dropped: " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(dropped.items()))
                     + ".")
    parts.append(f"A {kind} example comes from {what}. Collect more feedback, or lower the minimum (--min-examples).")
    return " ".join(parts)


def write_dataset(dataset: Dataset, out_dir: Path) -> dict:
    """train.jsonl, validation.jsonl and manifest.json (counts, scrub report, dataset hash, prompt version)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats.write_jsonl(out / formats.TRAIN_FILE, (e.record for e in dataset.train))
    formats.write_jsonl(out / formats.VALIDATION_FILE, (e.record for e in dataset.validation))
    manifest = {
        **dataset.report,
        "dataset_hash": dataset.dataset_hash,
        "files": {"train": formats.TRAIN_FILE, "validation": formats.VALIDATION_FILE},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / formats.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    return manifest
