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
removed or changed are left out of the prompt instead. Personal data in questions, answers and corrections is scrubbed (see `scrub`).
The train/validation split is a hash of the example, so an example stays on its side as the set grows.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.orm import sessionmaker

from bot.cache import normalize_question
from bot.citations import MARKER, marker_numbers
from bot.finetune import formats
from bot.finetune.scrub import ScrubReport, find_allowed, scrub
from bot.prompt import PROMPT_VERSION, PromptSource, build_messages

ANSWER_KINDS = ("llm", "extractive", "fallback")
EXCLUDED_PLATFORMS = ("eval",)  # evaluation runs are not feedback
DEFAULT_MIN_EXAMPLES = 10
DEFAULT_VALIDATION_SHARE = 0.1



class DatasetTooSmall(ValueError):
    """Too little usable feedback for a dataset; the message says what there is and what is needed."""


# ----------------------------------------------------------------------------------------------- values


@dataclass
class Vote:
    user_id: str
    rating: int
    correction: str | None
    at: datetime


@dataclass
class Candidate:
    """An answer that was actually generated (not a cache hit), with every vote on it and its cached copies."""

    interaction_id: str
    created_at: datetime
    question: str  # the standalone question the prompt was built with
    answer: str
    retrieved: list[dict]
    citations: list[dict]
    kind: str
    votes: dict[str, Vote] = field(default_factory=dict)  # user -> latest vote

    def vote(self, vote: Vote) -> None:
        current = self.votes.get(vote.user_id)
        if current is None or vote.at >= current.at:
            # a later vote without a correction keeps an earlier correction by the same user (as feedback does)
            if current is not None and vote.correction is None and vote.rating == current.rating:
                vote.correction = current.correction
            self.votes[vote.user_id] = vote

    @property
    def ups(self) -> int:
        return sum(1 for v in self.votes.values() if v.rating > 0)

    @property
    def downs(self) -> int:
        return sum(1 for v in self.votes.values() if v.rating < 0)

    @property
    def verdict(self) -> int:
        """+1 liked, -1 disliked, 0 undecided (as many 👍 as 👎)."""
        return (self.ups > self.downs) - (self.downs > self.ups)

    @property
    def sources_key(self) -> tuple:
        return tuple((r.get("chunk_id"), r.get("document_id"), r.get("document_version")) for r in self.retrieved)

    @property
    def cited(self) -> set[int]:
        """1-based snapshot positions of the passages the answer cited (its sources)."""
        return set(citation_positions(self.citations, self.retrieved).values())

    @property
    def documents(self) -> frozenset[tuple[int, int]]:
        """(document id, version) of the answer's sources: what must still be current for the example to hold."""
        return frozenset((int(self.retrieved[p - 1]["document_id"]), int(self.retrieved[p - 1].get("document_version") or 0))
                         for p in self.cited)


@dataclass(frozen=True)
class Example:
    kind: str  # sft | dpo
    origin: str  # thumbs_up | correction | thumbs_pair
    record: dict  # the JSONL line
    interaction_ids: tuple[str, ...]
    documents: frozenset[tuple[int, int]]  # the cited documents, checked against the documents table
    scrubbed: tuple[tuple[str, int], ...] = ()
    uncited_target: bool = False

    @property
    def hash(self) -> str:
        return formats.record_hash(self.record)


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


# ----------------------------------------------------------------------------------------------- loading

_FEEDBACK = text(
    """
    SELECT i.id, i.created_at, i.question, i.rewritten_question, i.answer, i.retrieved, i.citations, i.kind,
           i.cached, f.user_id AS voter, f.rating, f.correction, f.updated_at AS voted_at
    FROM feedback f JOIN interactions i ON i.id = f.interaction_id
    WHERE i.kind IN :kinds AND i.platform NOT IN :platforms
    ORDER BY i.created_at, i.id, f.updated_at
    """
).bindparams(bindparam("kinds", expanding=True), bindparam("platforms", expanding=True))

_ORIGINS = text(
    """
    SELECT id, created_at, question, rewritten_question, answer, retrieved, citations, kind
    FROM interactions
    WHERE NOT cached AND kind IN :kinds AND answer IN :answers AND jsonb_array_length(retrieved) > 0
    ORDER BY created_at DESC
    """
).bindparams(bindparam("kinds", expanding=True), bindparam("answers", expanding=True))

_DOCUMENTS = text("SELECT id, version FROM documents")


def load_candidates(sessions: sessionmaker, correction_authors: set[str] | None = None) -> tuple[list[Candidate], Counter]:
    """Answers with feedback, cached copies folded into their origin. Returns (candidates, skipped counts)."""
    skipped: Counter = Counter()
    with sessions() as session:
        rows = session.execute(_FEEDBACK, {"kinds": list(ANSWER_KINDS), "platforms": list(EXCLUDED_PLATFORMS)}).all()
        cached_answers = sorted({r.answer for r in rows if r.cached or not r.retrieved})
        origins = (
            session.execute(_ORIGINS, {"kinds": list(ANSWER_KINDS), "answers": cached_answers}).all()
            if cached_answers else []
        )
    by_answer: dict[str, list] = defaultdict(list)
    for origin in origins:
        by_answer[origin.answer].append(origin)

    candidates: dict[str, Candidate] = {}

    def candidate_for(row) -> Candidate:
        if row.id not in candidates:
            candidates[row.id] = Candidate(
                interaction_id=row.id, created_at=row.created_at, question=row.rewritten_question or row.question,
                answer=row.answer, retrieved=list(row.retrieved or []), citations=list(row.citations or []),
                kind=row.kind,
            )
        return candidates[row.id]

    for row in rows:
        correction = row.correction
        if correction and correction_authors is not None and row.voter not in correction_authors:
            skipped["correction_not_by_admin"] += 1
            correction = None
        vote = Vote(row.voter, int(row.rating), correction if row.rating < 0 else None, row.voted_at)
        if row.cached or not row.retrieved:
            question = normalize_question(row.rewritten_question or row.question)
            origin = next(
                (o for o in by_answer.get(row.answer, [])
                 if o.created_at <= row.created_at and normalize_question(o.rewritten_question or o.question) == question),
                None,
            )
            if origin is None:
                skipped["cached_without_origin"] += 1
                continue
            candidate_for(origin).vote(vote)
        else:
            candidate_for(row).vote(vote)
    return sorted(candidates.values(), key=lambda c: (c.created_at, c.interaction_id)), skipped


def current_documents(sessions: sessionmaker) -> dict[int, int]:
    with sessions() as session:
        return {int(r.id): int(r.version) for r in session.execute(_DOCUMENTS)}


# ----------------------------------------------------------------------------------------------- markers


def remap_markers(answer: str, mapping: dict[int, int]) -> tuple[str, int]:
    """Rewrite [n] markers through `mapping` (old number -> new number); unmapped ones are removed.
    Returns the text and how many markers were kept."""
    kept_total = 0

    def replace(match: re.Match) -> str:
        nonlocal kept_total
        kept: list[int] = []
        for number in marker_numbers(match.group(1)):
            if number in mapping and mapping[number] not in kept:
                kept.append(mapping[number])
        kept_total += len(kept)
        return "".join(f"[{n}]" for n in kept)

    new = MARKER.sub(replace, answer)
    new = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", new)).strip()
    return new, kept_total


def citation_positions(citations: list[dict], retrieved: list[dict]) -> dict[int, int]:
    """Displayed marker (citation order) -> 1-based position of that passage in the prompt (retrieval order)."""
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for citation in citations:
        snippet = (citation.get("snippet") or "").rstrip("…").strip()
        for index, passage in enumerate(retrieved):
            if index in used:
                continue
            if citation.get("document_id") is not None and passage.get("document_id") != citation.get("document_id"):
                continue
            if (passage.get("section") or "") != (citation.get("section") or ""):
                continue
            if passage.get("page") != citation.get("page"):
                continue
            if snippet and not (passage.get("text") or "").startswith(snippet):
                continue
            mapping[int(citation["marker"])] = index + 1
            used.add(index)
            break
    return mapping


# ----------------------------------------------------------------------------------------------- building


@dataclass
class _Prompt:
    messages: list[dict]
    allowed: set[str]  # company text (sources, system message): never scrubbed from a target
    layout: dict[int, int]  # 1-based snapshot position -> 1-based position in this prompt
    scrubbed: Counter  # what was scrubbed from the question
    sources: int = 0

    def positions(self, candidate: Candidate) -> dict[int, int]:
        """The candidate's displayed markers -> this prompt's source numbers (same snapshot)."""
        displayed = citation_positions(candidate.citations, candidate.retrieved)
        return {marker: self.layout[pos] for marker, pos in displayed.items() if pos in self.layout}


class _Builder:
    def __init__(self, brand_voice: str, hr_contact: str, current: dict[int, int], sessions=None, embedder=None,
                 distractors: int = 0):
        self.brand_voice, self.hr_contact, self.current = brand_voice, hr_contact, current
        self.sessions, self.embedder, self.distractors = sessions, embedder, distractors
        self._prompts: dict[str, _Prompt] = {}
        self.stale_passages_removed = 0
        self.skipped: Counter = Counter()

    def prompt(self, candidate: Candidate) -> _Prompt:
        if candidate.interaction_id not in self._prompts:
            self._prompts[candidate.interaction_id] = self._prompt(candidate)
        return self._prompts[candidate.interaction_id]

    def _prompt(self, candidate: Candidate) -> _Prompt:
        # Passages the answer did not cite whose document was since removed or changed leave the prompt (a cited
        # one makes the whole example stale: it is dropped later).
        cited = candidate.cited
        kept = [i for i, p in enumerate(candidate.retrieved)
                if i + 1 in cited or self.current.get(int(p["document_id"])) == int(p.get("document_version") or 0)]
        self.stale_passages_removed += len(candidate.retrieved) - len(kept)
        snapshot = [candidate.retrieved[i] for i in kept]
        extra = self._distractors(candidate) if self.distractors else []
        order = list(range(len(snapshot) + len(extra)))
        if extra:  # interleaved, so the model cannot learn that the last passages never matter
            random.Random(candidate.interaction_id).shuffle(order)
        passages = [(snapshot + extra)[i] for i in order]
        layout = {kept[old] + 1: new + 1 for new, old in enumerate(order) if old < len(snapshot)}

        sources = [PromptSource(p.get("title") or "", p.get("section") or "", p.get("text") or "", p.get("page"))
                   for p in passages]
        company_text = self.brand_voice + "\n" + self.hr_contact + "\n" + "\n".join(s.text for s in sources)
        allowed = find_allowed(company_text)
        report = ScrubReport()
        question = scrub(candidate.question, report, allowed)
        messages = build_messages(question, sources, self.brand_voice, self.hr_contact)
        return _Prompt(messages, allowed, layout, report.counts, len(sources))

    def target(self, prompt: _Prompt, candidate: Candidate, answer: str, counts: Counter) -> tuple[str, bool]:
        """`answer` (the candidate's answer or a correction of it) with markers in the prompt's numbering, scrubbed.
        Also says whether no citation marker is left."""
        report = ScrubReport()
        mapped, kept = remap_markers(answer, prompt.positions(candidate))
        cleaned = scrub(mapped, report, prompt.allowed)
        counts.update(report.counts)
        return cleaned, kept == 0

    def _distractors(self, candidate: Candidate) -> list[dict]:
        if self.sessions is None or self.embedder is None:
            raise ValueError("distractor passages need the retriever: pass sessions and embedder")
        from knowledge.retrieval import search

        have = {r.get("chunk_id") for r in candidate.retrieved}
        with self.sessions() as session:
            found = search(session, self.embedder, candidate.question, k=len(have) + self.distractors + 5)
        extra = [p for p in found if p.chunk_id not in have][: self.distractors]
        return [{"chunk_id": p.chunk_id, "document_id": p.document_id, "document_version": p.document_version,
                 "title": p.title, "section": p.section, "page": p.page, "text": p.text, "score": p.score}
                for p in extra]


def _example(kind: str, origin: str, record: dict, candidates: list[Candidate], counts: Counter,
             uncited: bool) -> Example:
    # Only the snapshot is checked for staleness: distractors come from the live corpus, so they are current.
    documents = frozenset().union(*(c.documents for c in candidates))
    return Example(kind, origin, record, tuple(c.interaction_id for c in candidates), documents,
                   tuple(sorted(counts.items())), uncited)


def sft_examples(candidates: list[Candidate], builder: _Builder) -> list[Example]:
    examples = []
    for c in candidates:
        corrections = [v.correction for v in c.votes.values() if v.rating < 0 and v.correction]
        if c.verdict <= 0 and not corrections:
            continue
        prompt = builder.prompt(c)
        if not prompt.sources:
            builder.skipped["no_current_sources"] += 1
            continue
        if c.verdict > 0:
            counts = Counter(prompt.scrubbed)
            target, uncited = builder.target(prompt, c, c.answer, counts)
            examples.append(_example("sft", "thumbs_up", formats.sft_record(prompt.messages, target), [c], counts,
                                     uncited))
        for correction in corrections:
            counts = Counter(prompt.scrubbed)
            target, uncited = builder.target(prompt, c, correction, counts)
            examples.append(_example("sft", "correction", formats.sft_record(prompt.messages, target), [c], counts,
                                     uncited))
    return examples


def dpo_examples(candidates: list[Candidate], builder: _Builder) -> list[Example]:
    examples = []
    for c in candidates:
        corrections = [v.correction for v in c.votes.values() if v.rating < 0 and v.correction]
        if not corrections:
            continue
        prompt = builder.prompt(c)
        if not prompt.sources:
            builder.skipped["no_current_sources"] += 1
            continue
        for correction in corrections:
            counts = Counter(prompt.scrubbed)
            preferred, uncited = builder.target(prompt, c, correction, counts)
            rejected, _ = builder.target(prompt, c, c.answer, counts)
            if preferred.strip() != rejected.strip():
                examples.append(_example("dpo", "correction", formats.dpo_record(prompt.messages, preferred, rejected),
                                         [c], counts, uncited))
    # 👍 vs 👎 answers to the same question with the same sources: the prompt is the same.
    groups: dict[tuple, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.verdict and c.retrieved:
            groups[(normalize_question(c.question), c.sources_key)].append(c)
    for group in groups.values():
        liked = [c for c in group if c.verdict > 0]
        disliked = [c for c in group if c.verdict < 0]
        for good in liked:
            prompt = builder.prompt(good)
            if not prompt.sources:
                continue
            for bad in disliked:
                counts = Counter(prompt.scrubbed)
                preferred, uncited = builder.target(prompt, good, good.answer, counts)
                # the 👎 answer's markers follow its own citation list: mapped through it onto the shared prompt
                rejected, _ = builder.target(prompt, bad, bad.answer, counts)
                if preferred.strip() != rejected.strip():
                    examples.append(_example("dpo", "thumbs_pair",
                                             formats.dpo_record(prompt.messages, preferred, rejected),
                                             [good, bad], counts, uncited))
    return examples


# ----------------------------------------------------------------------------------------------- the dataset


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
) -> Dataset:
    """Build an sft or dpo dataset. Raises DatasetTooSmall when fewer than `min_examples` examples remain.

    correction_authors: whose corrections count (e.g. the admins); None accepts anyone's."""
    if kind not in formats.KINDS:
        raise ValueError(f"kind must be one of {formats.KINDS}, not {kind!r}")
    candidates, skipped = load_candidates(sessions, correction_authors)
    documents = current_documents(sessions)
    builder = _Builder(brand_voice, hr_contact, documents, sessions, embedder, distractors)
    made = sft_examples(candidates, builder) if kind == "sft" else dpo_examples(candidates, builder)

    dropped: Counter = Counter(skipped) + builder.skipped
    kept: list[Example] = []
    seen: set[str] = set()
    for example in made:
        stale = _stale(example.documents, documents)
        if stale:
            dropped[stale] += 1
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
    if len(kept) < min_examples:
        raise DatasetTooSmall(_too_small_message(kind, len(kept), min_examples, candidates, origins, dropped))

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
        "stale_passages_removed": builder.stale_passages_removed,
        "distractors": distractors,
        "validation_share": validation_share,
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


def _too_small_message(kind: str, count: int, minimum: int, candidates: list[Candidate], origins: Counter,
                       dropped: Counter) -> str:
    ups = sum(1 for c in candidates if c.verdict > 0)
    downs = sum(1 for c in candidates if c.verdict < 0)
    corrections = sum(1 for c in candidates for v in c.votes.values() if v.rating < 0 and v.correction)
    what = ("👍 answers and corrections of 👎 answers" if kind == "sft"
            else "👎 answers with a correction, or 👍 and 👎 answers to the same question")
    parts = [
        f"Not enough feedback for a {kind} dataset: {count} usable example{'s' if count != 1 else ''}, "
        f"at least {minimum} needed.",
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
