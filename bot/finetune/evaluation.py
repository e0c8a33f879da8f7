"""Answer evaluation and the promotion gate. (Over 400 lines: the gate's rules are about what evaluation
measures — which metrics, their denominators, what a missing one means — so they are kept together.)

`evaluate_answers` runs a question set (knowledge.evaluation's JSONL: question, document — null when the
documents do not answer it —, section, answer_key) through the full answer pipeline, `PolicyBot.answer` with
`model_override`, as platform "eval" and user "eval", and measures:

It measures the model, never the extractive fallback that stands in for it:

- citation_validity: of the model's own replies that carry [n] markers (`replies_with_markers`, out of
  `model_replies`), the share whose markers all point to sources that were in the prompt. Measured on the raw
  reply, before the core drops bad markers; a question the model never replied to (timeout, error) is not a
  reply and is not counted here: it is a fallback and an error.
- grounded_rate: of the answerable questions, the share answered (not refused) by the model itself with at
  least one valid citation; a fallback is a failure.
- correct_refusal_rate: of the questions the documents do not answer, the share refused.
- answer_key_hit_rate: of the answerable questions with an answer key (`keyed`), the share whose answer by the
  model contains every key phrase (case-insensitive); a fallback's text is a miss.
- document_hit_rate: of the answerable questions, the share whose answer by the model cites the expected document.
- fallbacks: questions whose model reply was replaced by the extractive answer (by reason in
  `fallback_reasons`: no_citation, truncated, repetition, timeout, ...); errors: those where the model gave no
  reply at all (timeout, connection or server error) plus answers that failed outright. Lower is better.

With no LLM configured the extractive answerer is what is evaluated (model "extractive").

Each question's result also says where it failed (`failed_at`), so a regression can be traced to its stage:
"retrieval" (the expected section, or document when no section is given, is not among the passages the
answerer saw), "relevance" (an answerable question refused although retrieval found it, or an unanswerable one
answered), "extraction" (answered, but without the answer key or without citing the expected document), or
null when it came out right.

The answer cache is bypassed for evaluation runs (a cached answer would hide the model's reply).

The gate: a candidate is promoted only when none of the rates is lower, and neither count (fallbacks, errors) is
higher, than the current model's (the active fine-tuned model, or the base model's `baseline` row) by more than
`tolerance` (a share; for the counts, of the questions), measured on the same question set. A metric the question
set measures but either side lacks (a model that never wrote a marker has no citation validity; metrics stored
before a metric existed) fails the gate: re-evaluate. `--force` overrides, and the refusal says which metric
dropped and by how much. Evaluation runs with the circuit breaker off: every question asks the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from bot.breaker import Breaker
from bot.cache import Lookup
from bot.citations import MARKER, marker_numbers
from bot.records import Interaction
from bot.finetune import registry
from bot.finetune.registry import ModelInfo, RegistryError
from bot.answer_state import answer_state
from bot.llm import Generation, LLMError, LLMProtocol
from knowledge.evaluation import EvalQuestion, is_expected_section, load_questions
from knowledge.retrieval import search

GATE_METRICS = ("citation_validity", "grounded_rate", "correct_refusal_rate", "answer_key_hit_rate",
                "document_hit_rate")
COUNT_METRICS = ("fallbacks", "errors")  # lower is better
# Which count says whether the question set measures a rate at all (no unanswerable question: no refusal rate).
_MEASURED_BY = {"citation_validity": "answerable", "grounded_rate": "answerable", "document_hit_rate": "answerable",
                "correct_refusal_rate": "unanswerable", "answer_key_hit_rate": "keyed",
                "fallbacks": "questions", "errors": "questions"}
NO_REPLY_REASONS = frozenset({"timeout", "error", "server_error", "rate_limited", "empty", "busy"})
EVAL_PLATFORM = "eval"
EVAL_USER = "eval"
BASE = "base"

_SOURCE_TAG = re.compile(r'<source id="\d+"')


def _marker_numbers(text: str) -> list[int]:
    return [n for group in MARKER.findall(text) for n in marker_numbers(group)]


class _NoCache:
    """Evaluation answers neither come from nor go to the answer cache (an AnswerCacheProtocol)."""

    def get(self, key: str) -> dict | None:
        return None

    def lookup(self, key: str, claim_ttl_s: float, rate=None) -> Lookup:
        if rate is not None:  # evaluation's platform is exempt (EVAL_PLATFORM): a rate here is a wiring bug
            raise ValueError("evaluation answers are not rate limited; run them on the exempt platform")
        return Lookup(allowed=True, hit=None, claimed=True)

    def put(self, key: str, value: dict) -> None:
        return None

    def claim(self, key: str, ttl_s: float) -> bool:  # every evaluated answer is computed, never waited for
        return True

    def release(self, key: str) -> None:
        return None

    def wait(self, key: str, timeout_s: float) -> dict | None:
        return None


class _RecordingLLM:
    """Wraps the core's LLM (an LLMProtocol) to keep the model's raw reply to an answer prompt (one with sources)
    and the number of sources it was given; `last` is None when the model did not reply."""

    def __init__(self, inner: LLMProtocol) -> None:
        self.inner = inner
        self.last: tuple[str, int] | None = None

    def complete(self, messages: list[dict], model: str, *args, **kwargs) -> Generation:
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        sources = len(_SOURCE_TAG.findall(user))
        try:
            generation = self.inner.complete(messages, model, *args, **kwargs)
        except LLMError:
            if sources:
                self.last = None
            raise
        if sources:  # not a follow-up rewrite
            self.last = (generation.text, sources)
        return generation

    def __getattr__(self, name):
        return getattr(self.inner, name)


@dataclass
class QuestionResult:
    question: str
    answerable: bool
    kind: str
    model: str
    answer: str
    citations_valid: bool | None  # None: no model reply, or it had no markers
    grounded: bool | None  # answerable questions only
    refused: bool
    key_hit: bool | None
    document_hit: bool | None
    retrieved: bool | None = None  # answerable only: the expected section was among the passages retrieved
    failed_at: str | None = None  # retrieval | relevance | extraction | None (right)
    replied: bool = False  # the model replied (with or without markers)
    fallback_reason: str | None = None  # why the model's reply was replaced (no_citation, timeout, ...)
    answered_by: str = ""  # the answer's own model field ("extractive (fallback)" for a fallback)

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EvalReport:
    model: str
    metrics: dict
    results: list[QuestionResult] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"model": self.model, "metrics": self.metrics, "results": [r.as_json() for r in self.results]}


def question_set_hash(questions: list[EvalQuestion]) -> str:
    rows = [{"q": q.question, "d": q.document, "s": q.section, "k": q.answer_key} for q in questions]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _expected_document(source, expected: str) -> bool:
    want = expected.strip().lower()
    name = (source.source or "").lower()
    return name == want or name.endswith("/" + want) or (source.document or "").lower() == want


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate_answers(runtime, questions: list[EvalQuestion], model: str | None = None) -> EvalReport:
    """Run `questions` through the answer core with `model` (None: the model that would answer now)."""
    from bot.core import PolicyBot, llm_from_runtime  # bot.core is the layer above the registry's users

    llm = llm_from_runtime(runtime)
    recorder = _RecordingLLM(llm) if llm is not None else None
    # A bot of its own: no cache, the recording LLM, no rate limit for the evaluation user, and no circuit breaker
    # (an open breaker would answer extractively without asking the model being measured).
    bot = PolicyBot(runtime, cache=_NoCache(), llm=recorder, rate_limit_exempt={EVAL_PLATFORM},
                    breaker=Breaker(runtime.redis, threshold=0, cooldown_s=1.0))
    evaluated = model or _current_model(runtime, llm is not None)
    results = [_ask(bot, recorder, q, model, evaluated) for q in questions]
    return _report(questions, results, evaluated)


def _current_model(runtime, has_llm: bool) -> str:
    """The model that answers now: the active fine-tuned one, the configured base model, or the extractive answerer."""
    from bot.core import EXTRACTIVE_MODEL

    if not has_llm:
        return EXTRACTIVE_MODEL
    with runtime.sessions() as session:
        _, active = answer_state(session)
    return active or runtime.settings.chat_model


def _fallback_reason(bot, interaction_id: str) -> str | None:
    with bot.runtime.sessions() as session:
        return session.scalar(select(Interaction.fallback_reason).where(Interaction.id == interaction_id))


def _ask(bot, recorder: _RecordingLLM | None, q: EvalQuestion, model: str | None, evaluated: str) -> QuestionResult:
    if recorder is not None:
        recorder.last = None
    answer = bot.answer(q.question, EVAL_USER, EVAL_PLATFORM, None, model_override=model)
    reason = _fallback_reason(bot, answer.interaction_id) if answer.recorded else None
    if answer.kind == "fallback" and reason is None:
        reason = "unknown"
    refused = answer.kind == "refusal"
    # The model's own reply: what it wrote (with an LLM), or the extractive answer when that is what is evaluated.
    raw = recorder.last if recorder is not None else (answer.text, len(answer.sources))
    numbers = _marker_numbers(raw[0]) if raw is not None and not (refused and reason is None) else []
    valid = None if not numbers else all(1 <= n <= raw[1] for n in numbers)
    by_model = answer.kind in ("llm", "extractive") or (refused and reason is None)  # not a stand-in's text
    text = answer.text.lower() if by_model else ""
    key_hit = all(k.lower() in text for k in q.answer_key) if q.answerable and q.answer_key else None
    document_hit = (by_model and any(_expected_document(s, q.document) for s in answer.sources)
                    if q.answerable else None)
    retrieved = _retrieved(bot, answer.question or q.question, q) if q.answerable else None
    return QuestionResult(
        question=q.question, answerable=q.answerable, kind=answer.kind, model=evaluated, answer=answer.text,
        citations_valid=valid,
        grounded=(answer.kind in ("llm", "extractive") and answer.grounded) if q.answerable else None,
        refused=refused, key_hit=key_hit, document_hit=document_hit, retrieved=retrieved,
        failed_at=_failed_at(q, refused, retrieved, key_hit, document_hit),
        replied=raw is not None, fallback_reason=reason, answered_by=answer.model,
    )


def _retrieved(bot, question: str, q: EvalQuestion) -> bool:
    """Whether the passages the answerer saw (the same search, same k) hold the expected section."""
    with bot.runtime.sessions() as session:
        version, _ = answer_state(session)
    background = bot.calibrator.background(bot.runtime.sessions, version)
    with bot.runtime.sessions() as session:
        passages = search(session, bot.runtime.embedder, question, k=bot.settings.top_k, background=background)
    return any(is_expected_section(p, q) for p in passages)


def _failed_at(q: EvalQuestion, refused: bool, retrieved: bool | None, key_hit: bool | None,
               document_hit: bool | None) -> str | None:
    if not q.answerable:
        return None if refused else "relevance"
    if not retrieved:
        return "retrieval"
    if refused:
        return "relevance"
    if key_hit is False or not document_hit:
        return "extraction"
    return None


def _report(questions: list[EvalQuestion], results: list[QuestionResult], used_model: str) -> EvalReport:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    cited = [r for r in results if r.citations_valid is not None]
    keyed = [r for r in answerable if r.key_hit is not None]
    fell_back = [r for r in results if r.fallback_reason is not None]
    metrics = {
        "citation_validity": _rate(sum(r.citations_valid for r in cited), len(cited)),
        "grounded_rate": _rate(sum(bool(r.grounded) for r in answerable), len(answerable)),
        "correct_refusal_rate": _rate(sum(r.refused for r in unanswerable), len(unanswerable)),
        "answer_key_hit_rate": _rate(sum(bool(r.key_hit) for r in keyed), len(keyed)),
        "document_hit_rate": _rate(sum(bool(r.document_hit) for r in answerable), len(answerable)),
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "keyed": len(keyed),
        "model_replies": sum(r.replied for r in results),
        "replies_with_markers": len(cited),
        "answers_with_markers": len(cited),  # the older name of replies_with_markers
        "false_refusals": sum(r.refused for r in answerable),
        "fallbacks": len(fell_back),
        "fallback_reasons": dict(sorted(Counter(r.fallback_reason for r in fell_back).items())),
        "errors": sum(r.fallback_reason in NO_REPLY_REASONS for r in fell_back) + sum(r.kind == "error" for r in results),
        "failed_at": {stage: sum(r.failed_at == stage for r in results)
                      for stage in ("retrieval", "relevance", "extraction")},
        "question_set": question_set_hash(questions),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": used_model,
    }
    return EvalReport(used_model, metrics, results)


# ------------------------------------------------------------------------------------------------ models


def resolve_model(runtime, ref: str) -> ModelInfo:
    """A registry row for `--model`: an id, job id or model id; "base" (or the base model's name) is the
    configured base model's baseline row, created on demand."""
    base_model = runtime.settings.chat_model
    if ref in (BASE, base_model):
        found = registry.find(runtime.sessions, ref) if ref != BASE else None
        if found is not None and found.provider != "base":
            return found
        return registry.baseline(runtime.sessions, base_model, create_missing=True)
    return registry.get(runtime.sessions, ref)


def evaluate_model(runtime, info: ModelInfo, questions: list[EvalQuestion],
                   questions_file: str | None = None) -> EvalReport:
    """Evaluate one registry model and store the metrics on it."""
    if not info.model_id:
        raise RegistryError(f"{info.label} has no model to evaluate yet")
    report = evaluate_answers(runtime, questions, model=info.model_id)
    metrics = {**report.metrics, **({"questions_file": questions_file} if questions_file else {})}
    registry.set_metrics(runtime.sessions, info.id, metrics)
    return report


def current_reference(runtime) -> ModelInfo | None:
    """What a candidate must beat: the active model, else the base model's baseline row (if evaluated)."""
    return registry.active(runtime.sessions) or registry.baseline(runtime.sessions, runtime.settings.chat_model)


# ------------------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class Drop:
    """A metric where the candidate is worse, or which either side lacks (None)."""

    metric: str
    candidate: float | None
    reference: float | None

    @property
    def delta(self) -> float:
        if self.candidate is None or self.reference is None:
            return float("nan")
        return self.candidate - self.reference

    def describe(self) -> str:
        if self.candidate is None or self.reference is None:
            side = "the candidate" if self.candidate is None else "the reference"
            why = (" (no reply carried a citation marker)" if self.metric == "citation_validity" and self.candidate is None
                   else "")
            return f"{self.metric} is missing for {side}{why}; a missing metric fails the gate (re-evaluate)"
        if self.metric in COUNT_METRICS:
            return f"{self.metric} rose from {self.reference:g} to {self.candidate:g} ({self.delta:+g})"
        return (f"{self.metric} dropped from {self.reference:.3f} to {self.candidate:.3f} "
                f"({self.delta:+.3f}, {self.delta * 100:+.1f} points)")


def _measures(metrics: dict, metric: str) -> bool:
    """Whether the question set these metrics came from measures `metric` (None when it cannot tell)."""
    count = metrics.get(_MEASURED_BY[metric])
    return bool(count) if count is not None else metrics.get(metric) is not None


def compare(candidate: dict, reference: dict, tolerance: float = 0.0) -> list[Drop]:
    """Metrics where the candidate is worse than the reference by more than `tolerance`, or that are missing."""
    drops = []
    questions = candidate.get("questions") or reference.get("questions") or 0
    for metric in GATE_METRICS + COUNT_METRICS:
        new, old = candidate.get(metric), reference.get(metric)
        if new is None or old is None:
            if _measures(candidate, metric) or _measures(reference, metric) or metric in COUNT_METRICS:
                drops.append(Drop(metric, None if new is None else float(new), None if old is None else float(old)))
            continue
        if metric in COUNT_METRICS:
            worse = new > old + tolerance * questions + 1e-9
        else:
            worse = new < old - tolerance - 1e-9
        if worse:
            drops.append(Drop(metric, float(new), float(old)))
    return drops


def _has_metrics(metrics: dict) -> bool:
    return any(metrics.get(m) is not None for m in GATE_METRICS)


@dataclass
class PromotionOutcome:
    promoted: bool
    message: str
    candidate: ModelInfo
    reference: ModelInfo | None = None
    drops: list[Drop] = field(default_factory=list)
    previous: ModelInfo | None = None

    def as_json(self) -> dict:
        return {
            "promoted": self.promoted, "message": self.message, "candidate": self.candidate.as_json(),
            "reference": self.reference.as_json() if self.reference else None,
            "drops": [{"metric": d.metric, "candidate": d.candidate, "reference": d.reference,
                       "delta": None if d.candidate is None or d.reference is None else round(d.delta, 4)}
                      for d in self.drops],
        }


def promote(runtime, ref: str, *, force: bool = False, questions_path: Path | None = None,
            tolerance: float = 0.0) -> PromotionOutcome:
    """Promote a candidate through the gate. With `questions_path` the candidate and the current model are
    evaluated first (and their metrics stored); otherwise their stored metrics are compared."""
    sessions = runtime.sessions
    candidate = registry.get(sessions, ref)
    if candidate.status not in registry.PROMOTABLE:
        raise RegistryError(
            f"{candidate.label} cannot be promoted: only {', '.join(registry.PROMOTABLE)} models can"
            + (" (its job is still running: `policybot finetune status`)" if candidate.status == registry.TRAINING else "")
        )
    reference = current_reference(runtime)
    if questions_path is not None:
        questions = load_questions(questions_path)
        if reference is None:
            reference = registry.baseline(sessions, runtime.settings.chat_model, create_missing=True)
        evaluate_model(runtime, candidate, questions, str(questions_path))
        evaluate_model(runtime, reference, questions, str(questions_path))
        candidate, reference = registry.get(sessions, candidate.id), registry.get(sessions, reference.id)
    reference_name = (f"the active model {reference.label}" if reference is not None and reference.status == "active"
                      else f"the base model {runtime.settings.chat_model}")

    drops: list[Drop] = []
    problem = None
    if not _has_metrics(candidate.metrics):
        problem = (f"{candidate.label} has no evaluation metrics; run `policybot eval answers QUESTIONS.jsonl "
                   f"--model {candidate.id}` or pass --questions")
    elif reference is None or not _has_metrics(reference.metrics):
        problem = (f"{reference_name} has no evaluation metrics to compare with; run `policybot eval answers "
                   f"QUESTIONS.jsonl --model {reference.id if reference is not None and reference.status == 'active' else BASE}`"
                   " or pass --questions")
    elif candidate.metrics.get("question_set") != reference.metrics.get("question_set"):
        problem = (f"{candidate.label} and {reference_name} were evaluated on different question sets "
                   f"({candidate.metrics.get('question_set')} vs {reference.metrics.get('question_set')}); "
                   "pass --questions to evaluate both on the same set")
    else:
        drops = compare(candidate.metrics, reference.metrics, tolerance)
        if drops:
            problem = (f"{candidate.label} scores worse than {reference_name}: "
                       + "; ".join(d.describe() for d in drops))

    if problem and not force:
        return PromotionOutcome(False, f"Not promoted: {problem}. Use --force to promote anyway.", candidate,
                                reference, drops)
    new, previous = registry.activate(sessions, candidate.id, reason="forced" if (problem and force) else "gate passed")
    message = f"Promoted {new.label}; it answers from the next question on."
    if previous is not None:
        message += f" Retired #{previous.id} {previous.model_id} (`policybot model rollback` restores it)."
    if problem:
        message += f" Forced past the gate: {problem}."
    return PromotionOutcome(True, message, new, reference, drops, previous)
