"""Training examples from candidates: the serving prompt rebuilt from the interaction's snapshot (stale uncited
passages left out, optional distractors interleaved), targets mapped to the prompt's numbering and scrubbed;
sft from 👍 answers and corrections, dpo from corrections and 👍/👎 pairs.

Audiences: every passage's audience is in the prompt (`audience="…"` on restricted passages, as when serving),
and an example whose prompt holds a passage the export's readers may not read is left out whole (its answer
was written with that passage in view, cited or not), so a model trained on an `everyone` export has never
seen restricted text. A document's current audiences count (they may have changed since the answer)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from bot.audiences import prompt_audience
from bot.cache import normalize_question
from bot.finetune import formats
from bot.finetune.candidates import Candidate
from bot.finetune.markers import citation_positions, remap_markers
from bot.finetune.scrub import ScrubReport, find_allowed, scrub
from bot.prompt import PromptSource, build_messages
from knowledge.audiences import EVERYONE, readable


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


@dataclass
class _Prompt:
    messages: list[dict]
    allowed: set[str]  # company text (sources, system message): never scrubbed from a target
    layout: dict[int, int]  # 1-based snapshot position -> 1-based position in this prompt
    scrubbed: Counter  # what was scrubbed from the question
    sources: int = 0
    unreadable: bool = False  # a passage the export's readers may not read: the example is left out

    def positions(self, candidate: Candidate) -> dict[int, int]:
        """The candidate's displayed markers -> this prompt's source numbers (same snapshot)."""
        displayed = citation_positions(candidate.citations, candidate.retrieved)
        return {marker: self.layout[pos] for marker, pos in displayed.items() if pos in self.layout}


class ExampleBuilder:
    def __init__(self, brand_voice: str, hr_contact: str, current: dict[int, int], sessions=None, embedder=None,
                 distractors: int = 0, audiences: dict[int, tuple[str, ...]] | None = None,
                 readers: tuple[str, ...] = (EVERYONE,)):
        """`audiences`: each current document's (None: every document is everyone's); `readers`: the audiences
        the export is for (`finetune export --audience`)."""
        self.brand_voice, self.hr_contact, self.current = brand_voice, hr_contact, current
        self.audiences, self.readers = audiences or {}, readers
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

        passage_audiences = [self._audiences_of(p) for p in passages]
        sources = [PromptSource(p.get("title") or "", p.get("section") or "", p.get("text") or "", p.get("page"),
                                prompt_audience(a)) for p, a in zip(passages, passage_audiences)]
        company_text = self.brand_voice + "\n" + self.hr_contact + "\n" + "\n".join(s.text for s in sources)
        allowed = find_allowed(company_text)
        report = ScrubReport()
        question = scrub(candidate.question, report, allowed)
        messages = build_messages(question, sources, self.brand_voice, self.hr_contact)
        unreadable = any(not readable(a, self.readers) for a in passage_audiences)
        return _Prompt(messages, allowed, layout, report.counts, len(sources), unreadable)

    def _audiences_of(self, passage: dict) -> tuple[str, ...]:
        """The document's current audiences; a removed one's as recorded (older snapshots: everyone)."""
        document = int(passage.get("document_id") or 0)
        return self.audiences.get(document) or tuple(passage.get("audiences") or (EVERYONE,))

    def usable(self, prompt: _Prompt) -> bool:
        """Whether examples may be made from this prompt; counts why not."""
        if not prompt.sources:
            self.skipped["no_current_sources"] += 1
            return False
        if prompt.unreadable:
            self.skipped["restricted_audience"] += 1
            return False
        return True

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
            found = search(session, self.embedder, candidate.question, k=len(have) + self.distractors + 5,
                           audiences=self.readers)
        extra = [p for p in found if p.chunk_id not in have][: self.distractors]
        return [{"chunk_id": p.chunk_id, "document_id": p.document_id, "document_version": p.document_version,
                 "title": p.title, "section": p.section, "page": p.page, "text": p.text, "score": p.score,
                 "audiences": list(p.audiences)}
                for p in extra]


def _example(kind: str, origin: str, record: dict, candidates: list[Candidate], counts: Counter,
             uncited: bool) -> Example:
    # Only the snapshot is checked for staleness: distractors come from the live corpus, so they are current.
    documents = frozenset().union(*(c.documents for c in candidates))
    return Example(kind, origin, record, tuple(c.interaction_id for c in candidates), documents,
                   tuple(sorted(counts.items())), uncited)


def sft_examples(candidates: list[Candidate], builder: ExampleBuilder) -> list[Example]:
    examples = []
    for c in candidates:
        corrections = [v.correction for v in c.votes.values() if v.rating < 0 and v.correction]
        if c.verdict <= 0 and not corrections:
            continue
        prompt = builder.prompt(c)
        if not builder.usable(prompt):
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


def dpo_examples(candidates: list[Candidate], builder: ExampleBuilder) -> list[Example]:
    examples = []
    for c in candidates:
        corrections = [v.correction for v in c.votes.values() if v.rating < 0 and v.correction]
        if not corrections:
            continue
        prompt = builder.prompt(c)
        if not builder.usable(prompt):
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
            if not prompt.sources or prompt.unreadable:
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
