"""The answer core: one entry point for every platform.

    question ─► router ─► follow-up rewrite ─► cache ─► retrieve ─► relevance ─► LLM or extractive
             ─► citations ─► cache ─► record ─► Answer

With `on_text` (bot.streaming.TextSink) an LLM answer is streamed: each delta goes to the sink as it is written,
and the returned Answer is the checked final text (possibly the extractive one instead), which is all the cache,
the records and the fine-tuning export ever see.

Adapters call `PolicyBot.answer()` (and the feedback/document methods) with plain values and render the
plain values that come back. Nothing here raises to an adapter: any failure degrades to a safe answer.

Well over 400 lines because it is the one place the steps meet, in the order they run; each step's rules live in
its own module (router, followup, cache, audiences, relevance, breaker, fallbacks, extractive, interactions).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from bot import fallbacks
from bot import feedback as feedback_store
from bot import followup, interactions, metrics, ratelimit, router
from bot.breaker import Breaker
from bot.audiences import AudienceResolver, Directory, prompt_audience, shown_audiences
from bot.cache import AnswerCache, AnswerCacheProtocol, cache_key
from bot.citations import has_citation, renumber
from bot.contract import Answer, DocumentInfo, FeedbackResult, Source, UploadResult
from bot.extractive import CLOSE_CALL_INTRO, EXTRACTIVE_VERSION, INTRO, extract_answer
from bot.fallbacks import Fallback
from bot.llm import LLM, GenerationLimits, LLMError, LLMProtocol
from bot.prompt import PROMPT_VERSION, PromptSource, build_messages, load_brand_voice
from bot.relevance import Calibrator, judge
from bot.runtime import Runtime
from bot.platform_events import PlatformEvents
from bot.query_vectors import QueryVectors
from bot.streaming import TextSink
from bot.escalation import Escalations
from bot.yielding import run_yielding
from bot.console_auth import ConsoleAuth
from knowledge.audiences import EVERYONE, AudienceError, readable, reader_audiences, restricted
from knowledge.db import reading
from knowledge.embeddings import EmbeddingMismatch
from knowledge.ingest import ingest_bytes, list_documents, remove_document
from knowledge.loaders import DocumentError
from knowledge.retrieval import Passage, search

log = logging.getLogger(__name__)

EXTRACTIVE_MODEL = "extractive"
# The per-user rate limit protects the chat platforms. A bot built without saying otherwise exempts a local
# terminal user and evaluation runs (the CLI and benchmarks rely on it); evaluation passes its own set.
DEFAULT_RATE_LIMIT_EXEMPT = frozenset({"terminal", "eval"})
SNIPPET_CHARS = 240
ASK_PRIVATELY = ("Documents that only some people may read could say more about this. Ask me in a direct "
                 "message and I'll use the ones you can read.")


@dataclass(frozen=True)
class Turn:
    """One question on its way through PolicyBot's steps. A step that learns something returns a new Turn
    (`replace`); `timings` is the one dict the steps share and fill in, in the order they run."""

    question: str  # as asked: spaces collapsed, cut to max_question_chars
    user_id: str
    platform: str
    conversation_id: str | None
    started: float  # time.perf_counter() when answer() was called: "total" counts from here
    notice: str | None = None  # shown with the answer: the message was cut, or how a follow-up was read
    standalone: str | None = None  # the question as answered, after the follow-up rewrite (None before it)
    corpus_version: int | None = None
    model: str | None = None  # what answers: the active or overriding model, or "extractive"
    cache_key: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    audiences: tuple[str, ...] = (EVERYONE,)  # what this answer may read (where it is shown decides)
    asker_audiences: tuple[str, ...] = (EVERYONE,)  # what the asker could read in a DM (for the hint)

    @property
    def rewritten(self) -> str | None:
        """The standalone question when the rewrite changed the message (shown and recorded), else None."""
        return self.standalone if self.standalone is not None and self.standalone != self.question else None


def llm_from_runtime(runtime: Runtime) -> LLM | None:
    """The configured chat endpoint behind the process's concurrency bound; None without one (extractive)."""
    if runtime.openai is None:
        return None
    return LLM(runtime.openai, runtime.settings.llm_concurrency, limits=GenerationLimits.from_settings(runtime.settings))


class PolicyBot:
    def __init__(self, runtime: Runtime, *, cache: AnswerCacheProtocol | None = None, llm: LLMProtocol | None = None,
                 rate_limit_exempt: Collection[str] = DEFAULT_RATE_LIMIT_EXEMPT, breaker: Breaker | None = None) -> None:
        """`cache`, `llm` and `breaker` default to the runtime's (Redis, the configured endpoint or none, the shared
        circuit breaker); they are the seams evaluation and tests replace, never attributes swapped on a live bot.
        `rate_limit_exempt`: the platforms whose users the per-user rate limit leaves alone."""
        self.runtime = runtime
        self.settings = runtime.settings
        self.cache = cache if cache is not None else AnswerCache(runtime.redis, runtime.settings.cache_ttl_s)
        self.brand_voice = load_brand_voice(runtime.settings.brand_voice_file)
        self.llm = llm if llm is not None else llm_from_runtime(runtime)
        self.breaker = breaker if breaker is not None else Breaker.from_settings(runtime.redis, runtime.settings)
        self.rate_limit_exempt = frozenset(rate_limit_exempt)
        self.calibrator = Calibrator(runtime.embedder, runtime.redis)
        self.query_vectors = QueryVectors(runtime.redis)  # a question asked before is not embedded again
        self.events = PlatformEvents(runtime.redis)  # event claims and answered threads, for the adapters
        self.escalations = Escalations(runtime.sessions, runtime.settings)  # "Ask HR" (bot.escalation)
        self.console = ConsoleAuth(runtime.redis, runtime.settings)  # admin console sign-in (bot.console_auth)
        # Who holds which audience; adapters register their platform's group lookup on it.
        self.audiences = AudienceResolver(Directory.load(runtime.settings.audiences_file), runtime.redis,
                                          runtime.settings.audience_ttl_s)

    def warm_up(self) -> None:
        """Load the embedding model and calibrate relevance now, so the first user does not wait for it."""
        try:
            self.runtime.embedder.embed_query("warm-up")
            corpus_version, _ = self.runtime.answer_state.current()
            self.calibrator.threshold(self.runtime.sessions, corpus_version)
        except Exception:  # a cold first answer is better than a server that does not start
            log.exception("warm-up failed; the first question will be slower")

    # ------------------------------------------------------------------------------------------ answers

    def answer(self, question: str, user_id: str, platform: str = "terminal", conversation_id: str | None = None,
               model_override: str | None = None, on_text: TextSink | None = None, *, private: bool = False,
               audiences: Collection[str] | None = None) -> Answer:
        """Answer one question. Never raises: a broken part gives a degraded answer, not an exception.

        `on_text`: where the text of an LLM answer goes while it is written (the adapters show it); other
        answers are returned without deltas. The returned Answer's text is final either way.
        `private`: only the asker sees the answer (a DM, a personal chat), so it may use their audiences; else
        only `everyone` documents. `audiences`: the asker's audiences as stated (the CLI's --audience) instead
        of looking them up (bot/audiences.py)."""
        started = time.perf_counter()
        try:
            asker = (reader_audiences(audiences) if audiences is not None
                     else self.audiences.audiences_of(platform, user_id))
            return self._answer(question, user_id, platform, conversation_id, model_override, started,
                                asker, shown_audiences(asker, private), on_text)
        except Exception:
            log.exception("answer failed; replying with an apology")
            return Answer(
                interaction_id=str(uuid.uuid4()),
                text=("Sorry, I couldn't look that up just now. Please try again in a minute, or contact "
                      f"{self.settings.hr_contact}."),
                sources=[], grounded=False, cached=False, model="none", kind="error",
                timings_ms={"total": _ms(started)}, question=question,
            )

    def _answer(self, question: str, user_id: str, platform: str, conversation_id: str | None,
                model_override: str | None, started: float, asker: tuple[str, ...] = (EVERYONE,),
                shown: tuple[str, ...] = (EVERYONE,), on_text: TextSink | None = None) -> Answer:
        question = " ".join((question or "").split())
        notice = None
        limit = self.settings.max_question_chars
        if len(question) > limit:
            question = question[:limit]
            notice = f"Your message was long, so I read only its first {limit:,} characters."
        turn = Turn(question=question, user_id=user_id, platform=platform, conversation_id=conversation_id,
                    started=started, notice=notice, audiences=shown, asker_audiences=asker)

        rate = None if platform in self.rate_limit_exempt else ratelimit.check(
            f"{platform}:{user_id}", self.settings.rate_limit_per_minute)
        kind = router.route(question)
        # The rate limit is counted in the cache lookup's round trip, unless costly work would come first: a
        # follow-up's rewrite may call the LLM, and a routed reply reads no cache. Those are counted here, alone.
        if rate is not None and (kind or followup.looks_like_follow_up(question)):
            if not ratelimit.allow(self.runtime.redis, rate.user_key, rate.per_minute):
                return self._limited(question, started)
            rate = None
        if kind:
            return self._record(Answer(
                interaction_id=str(uuid.uuid4()), text=router.reply(kind, self.settings.hr_contact), sources=[],
                grounded=True, cached=False, model="router", kind="smalltalk", notice=notice, question=question,
                timings_ms={"total": _ms(started)}, audiences=turn.audiences,
            ), turn)

        # The model is known before the rewrite: a follow-up is rewritten by the model that will answer it.
        t = time.perf_counter()
        corpus_version, active_model = self.runtime.answer_state.current()
        model = model_override or (active_model or self.settings.chat_model if self.llm else EXTRACTIVE_MODEL)
        turn = replace(turn, corpus_version=corpus_version, model=model)
        state_ms = _ms(t)
        turn = self._rewrite(turn)
        t = time.perf_counter()
        key = cache_key(turn.standalone, corpus_version, model, f"{PROMPT_VERSION}/{EXTRACTIVE_VERSION}",
                        turn.audiences)
        turn = replace(turn, cache_key=key)
        found = self.cache.lookup(key, self._longest_answer_s(), rate)
        if not found.allowed:
            return self._limited(question, started)
        hit, claimed = found.hit, found.claimed
        metrics.observe_cache(hit is not None)
        if hit is None and not claimed:  # the same question is being answered right now: wait for that answer
            hit = self.cache.wait(key, self._longest_answer_s())
        turn.timings["cache"] = state_ms + _ms(t)
        if hit:
            turn.timings["total"] = _ms(started)
            answer = Answer.from_cache(hit, str(uuid.uuid4()), turn.timings)
            answer = replace(answer, notice=turn.notice, rewritten_question=turn.rewritten, audiences=turn.audiences)
            return self._hint_private(self._record(answer, turn), turn)
        try:
            return self._hint_private(self._answer_uncached(turn, on_text), turn)
        finally:
            if claimed:
                self.cache.release(key)

    def _limited(self, question: str, started: float) -> Answer:
        metrics.rate_limited.inc()
        # Not recorded: a flood must not turn into a flood of database writes.
        return Answer(
            interaction_id=str(uuid.uuid4()), sources=[], grounded=True, cached=False, model="none",
            kind="limited", question=question, timings_ms={"total": _ms(started)},
            text=("You're asking faster than I can keep up with. Please wait a minute and ask again "
                  f"(the limit is {self.settings.rate_limit_per_minute} questions a minute)."),
        )

    def _hint_private(self, answer: Answer, turn: Turn) -> Answer:
        """In a channel: when a restricted document the asker may read would have answered, say they can ask
        in a DM (without naming it: the channel sees the answer). One more search, only for askers who hold
        an audience beyond `everyone`."""
        if set(turn.asker_audiences) <= set(turn.audiences) or answer.kind not in ("llm", "extractive", "fallback",
                                                                                   "refusal"):
            return answer
        try:
            vector = self.query_vectors.embed(self.runtime.embedder, turn.standalone)
            calibration = self.calibrator.calibration(self.runtime.sessions, turn.corpus_version,
                                                      turn.asker_audiences)
            with reading(self.runtime.sessions) as session:
                passages = search(session, self.runtime.embedder, turn.standalone, k=self.settings.top_k,
                                  query_embedding=vector, background=calibration.background,
                                  audiences=turn.asker_audiences)
        except Exception:  # the hint is a courtesy: the answer stands without it
            log.exception("could not check for restricted documents to mention")
            return answer
        # "Would have answered": the best passage the asker may read is a restricted one, and it passes the gate.
        if not passages or readable(passages[0].audiences, turn.audiences) or not judge(
                passages[:1], calibration.threshold).relevant:
            return answer
        return replace(answer, notice=" ".join(filter(None, (answer.notice, ASK_PRIVATELY))))

    def _rewrite(self, turn: Turn) -> Turn:
        """The question as it stands alone: a follow-up is read with the earlier turns of its conversation."""
        t = time.perf_counter()
        # Earlier turns are read only when the message looks like a follow-up: most questions skip the query.
        history = (interactions.history(self.runtime.sessions, turn.platform, turn.conversation_id)
                   if followup.looks_like_follow_up(turn.question) else [])
        # The answering model rewrites, unless there is none or its breaker is open (then the heuristic does).
        # Checked only when there are earlier turns to read the message with: the breaker's state is a Redis call.
        usable = (bool(history) and self.llm is not None and turn.model != EXTRACTIVE_MODEL
                  and not self.breaker.is_open(turn.model))
        standalone = followup.rewrite(history, turn.question, self.llm if usable else None, turn.model)
        turn.timings["rewrite"] = _ms(t)
        turn = replace(turn, standalone=standalone)
        if turn.rewritten:  # the user sees how their message was read, so a wrong merge is visible and can be retried
            notice = " ".join(filter(None, (turn.notice, f"Reading this as: “{turn.rewritten}”")))
            turn = replace(turn, notice=notice)
        return turn

    def _longest_answer_s(self) -> float:
        """How long one answer can take: every LLM attempt timing out, plus retrieval."""
        return self.settings.llm_timeout_s * (self.settings.llm_max_retries + 1) + 5.0

    def _answer_uncached(self, turn: Turn, on_text: TextSink | None = None) -> Answer:
        timings = turn.timings
        t = time.perf_counter()
        query_vector = self.query_vectors.embed(self.runtime.embedder, turn.standalone)
        timings["embed"] = _ms(t)
        calibration = self.calibrator.calibration(self.runtime.sessions, turn.corpus_version, turn.audiences)
        t = time.perf_counter()
        with reading(self.runtime.sessions) as session:
            passages = search(session, self.runtime.embedder, turn.standalone, k=self.settings.top_k,
                              query_embedding=query_vector, background=calibration.background,
                              audiences=turn.audiences)
        timings["retrieve"] = _ms(t)

        relevance = judge(passages, calibration.threshold)
        usage, fallback = (None, None), None
        if not relevance.relevant:
            answer = self._refusal(turn)
        else:
            answer, usage, fallback = self._generate(turn, passages, close_call=relevance.close_call,
                                                     on_text=on_text)
        timings["total"] = _ms(turn.started)
        answer = replace(answer, timings_ms=timings, rewritten_question=turn.rewritten, audiences=turn.audiences)
        if answer.kind in ("llm", "extractive", "refusal"):  # never cache a fallback: the LLM may be back next time
            self.cache.put(turn.cache_key, answer.to_cache())
        return self._record(answer, turn, passages, usage, fallback)

    def _refusal(self, turn: Turn) -> Answer:
        text = ("I couldn't find that in our policies, so I don't want to guess. "
                f"Please contact {self.settings.hr_contact} and they'll help you.")
        return Answer(interaction_id=str(uuid.uuid4()), text=text, sources=[], grounded=False, cached=False,
                      model=turn.model, kind="refusal", notice=turn.notice, question=turn.standalone)

    def _generate(self, turn: Turn, passages: list[Passage], close_call: bool = False,
                  on_text: TextSink | None = None) -> tuple[Answer, tuple[int | None, int | None], Fallback | None]:
        """The model's answer (streamed to `on_text` as it is written when given), or the extractive one with the
        Fallback saying which model failed and why."""
        question, model, timings = turn.standalone, turn.model, turn.timings
        usage, fallback = (None, None), None
        if self.llm is not None and not self.breaker.allow(model):
            fallback = Fallback(model, "breaker_open")
        elif self.llm is not None:
            t = time.perf_counter()
            try:
                messages = self.prompt_messages(question, passages)
                stream = getattr(self.llm, "stream", None) if on_text is not None else None
                generation = (stream(messages, model, on_text) if stream is not None
                              else self.llm.complete(messages, model))
            except LLMError as err:
                timings["llm"] = _ms(t)
                metrics.llm_failures.inc()
                log.warning("LLM failed (%s), answering extractively: %s", err.reason, err)
                fallback = Fallback(model, err.reason)
                if err.reason != "busy":  # our own queue being full says nothing about the model
                    self.breaker.failure(model)
            else:
                timings["llm"] = _ms(t)
                usage = (generation.prompt_tokens, generation.completion_tokens)
                answer, fallback = self._use_reply(turn, generation.text, generation.finish_reason, passages)
                if answer is not None:
                    self.breaker.success(model)
                    return answer, usage, None
                log.warning("LLM reply not used (%s); using the extractive answer", fallback.reason)
                self.breaker.failure(model)
        if fallback is not None:
            fallbacks.observe(fallback)
        t = time.perf_counter()
        # The message as written says what was asked of the merged question: its words lead the extract.
        focus = turn.question if turn.rewritten is not None else None
        # A close call may be a near-topic question the gate cannot tell apart: say so instead of asserting.
        text = extract_answer(question, [p.text for p in passages], intro=CLOSE_CALL_INTRO if close_call else INTRO,
                              focus=focus,
                              documents=[p.document_id for p in passages], sections=[p.section for p in passages])
        timings["extract"] = _ms(t)
        if not text:
            return self._refusal(turn), usage, fallback
        cited = renumber(text, len(passages))
        kind = "extractive" if fallback is None else "fallback"
        used_model = EXTRACTIVE_MODEL if fallback is None else f"{EXTRACTIVE_MODEL} (fallback)"
        return self._with_sources(turn, cited.text, cited.order, passages, used_model, kind), usage, fallback

    def _use_reply(self, turn: Turn, text: str, finish_reason: str | None, passages: list[Passage]
                   ) -> tuple[Answer | None, Fallback | None]:
        """The post-generation check: an answer from the reply (cited, or a refusal), or why it cannot be used."""
        problem = fallbacks.reply_problem(text, finish_reason)
        if problem is None:
            cited = renumber(text, len(passages))
            if cited.order:
                return self._with_sources(turn, cited.text, cited.order, passages, turn.model, "llm"), None
            if _is_refusal(text):
                return replace(self._refusal(turn), text=cited.text), None
            problem = "no_citation"
        return None, Fallback(turn.model, problem, text)

    def _with_sources(self, turn: Turn, text: str, order: list[int], passages: list[Passage], model: str,
                      kind: str) -> Answer:
        sources = [_source(marker, passages[i]) for marker, i in enumerate(order, 1)]
        return Answer(interaction_id=str(uuid.uuid4()), text=text, sources=sources,
                      grounded=bool(sources) and has_citation(text), cached=False, model=model, kind=kind,
                      notice=turn.notice, question=turn.standalone)

    def prompt_messages(self, question: str, passages: list[Passage]) -> list[dict]:
        sources = [PromptSource(p.title, p.section, p.text, p.page, prompt_audience(p.audiences)) for p in passages]
        return build_messages(question, sources, self.brand_voice, self.settings.hr_contact)

    def _record(self, answer: Answer, turn: Turn, passages: Sequence[Passage] = (),
                usage: tuple[int | None, int | None] = (None, None), fallback: Fallback | None = None) -> Answer:
        t = time.perf_counter()
        row = dict(
                id=answer.interaction_id, platform=turn.platform, user_id=turn.user_id,
                conversation_id=turn.conversation_id, question=turn.question, rewritten_question=turn.rewritten,
                retrieved=[_snapshot(p) for p in passages], prompt_version=PROMPT_VERSION, model=answer.model,
                answer=answer.text, citations=[s.__dict__ for s in answer.sources], grounded=answer.grounded,
                cached=answer.cached, kind=answer.kind, corpus_version=turn.corpus_version, timings=answer.timings_ms,
                prompt_tokens=usage[0], completion_tokens=usage[1], audiences=list(turn.audiences),
                **(fallback.columns() if fallback is not None else fallbacks.NO_FALLBACK),
            )
        if not interactions.record_with_retry(self.runtime.engine, row):
            # The user still gets the answer, but without 👍/👎: a vote would have no turn to attach to.
            log.error("could not record interaction %s; answering without feedback buttons", answer.interaction_id)
            answer = replace(answer, recorded=False)
        # The caller's figure includes the write it waited for.
        answer = replace(answer, timings_ms={**answer.timings_ms, "record": _ms(t), "total": _ms(turn.started)})
        metrics.observe_answer(answer.kind, turn.platform, answer.timings_ms, usage)
        return answer

    # ------------------------------------------------------------------------------------------ feedback

    def feedback(self, interaction_id: str, user_id: str, platform: str, rating: int, comment: str | None = None,
                 correction: str | None = None) -> FeedbackResult:
        try:
            result = feedback_store.record_feedback(self.runtime.sessions, interaction_id, user_id, platform, rating,
                                                    comment, correction)
            if result.recorded:
                metrics.feedback.labels("up" if rating > 0 else "down", platform).inc()
            return result
        except Exception:
            log.exception("could not record feedback on %s", interaction_id)
            return FeedbackResult(False, rating, False, "Sorry, I couldn't save your feedback. Please try again.")

    def remember_message(self, interaction_id: str, message_ref: str) -> None:
        interactions.set_message_ref(self.runtime.engine, interaction_id, message_ref)

    def interaction_for_message(self, message_ref: str) -> str | None:
        return interactions.find_by_message_ref(self.runtime.sessions, message_ref)

    # ------------------------------------------------------------------------------------------ documents

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.settings.admins

    def upload(self, user_id: str, filename: str, data: bytes, title: str | None = None,
               link: str | None = None, audiences: str | Collection[str] | None = None) -> UploadResult:
        """An admin's upload: ingested (a document with the same file name or title is replaced) or refused.
        `audiences`: who may read it (`leadership, payroll-de`); None keeps a replaced document's, else everyone."""
        if not self.is_admin(user_id):
            return UploadResult(False, "Only policy admins can upload documents. Ask the People team to add you.")
        try:
            # At a lower CPU priority than answers: a document's embedding must not slow the answers meanwhile.
            result = run_yielding(self.settings.upload_priority, ingest_bytes, self.runtime.sessions,
                                  self.runtime.embedder, data, filename, title=title, link=link, uploaded_by=user_id,
                                  max_bytes=self.settings.max_document_bytes, audiences=audiences)
        except AudienceError as err:
            return UploadResult(False, f"Upload failed: {err}. Nothing was changed.")
        except (DocumentError, EmbeddingMismatch) as err:
            metrics.ingestions.labels("rejected").inc()
            return UploadResult(False, f"Upload failed: {err}")
        except Exception:
            log.exception("upload of %s failed", filename)
            return UploadResult(False, f"Upload of {filename} failed on our side; nothing was changed. Try again later.")
        metrics.ingestions.labels(result.status).inc()
        verb = {"created": "Added", "updated": "Updated", "unchanged": "No change to"}[result.status]
        detail = "same content as the current version" if result.status == "unchanged" else f"{result.chunks} passages"
        readers = "" if not restricted(result.audiences) else f"; readable by {', '.join(result.audiences)} only"
        return UploadResult(True, f"{verb} “{result.title}” (version {result.version}, {detail}{readers}).",
                            result.title, result.version, result.chunks, result.status)

    def documents(self, audiences: Collection[str] | None = None) -> list[DocumentInfo]:
        """The documents, or only those readers of `audiences` may read (a restricted title says too much)."""
        return [
            DocumentInfo(d.id, d.title, d.source, d.link, d.version, d.chunk_count,
                         d.updated_at.isoformat() if d.updated_at else None, tuple(d.audiences or (EVERYONE,)))
            for d in list_documents(self.runtime.sessions)
            if audiences is None or readable(d.audiences or (EVERYONE,), audiences)
        ]

    def documents_for(self, platform: str, user_id: str) -> list[DocumentInfo]:
        """What a chat `list` shows its (private) asker: every document to an admin, else the readable ones."""
        return self.documents(None if self.is_admin(user_id) else self.audiences.audiences_of(platform, user_id))

    def remove(self, user_id: str, id_or_title: str) -> UploadResult:
        if not self.is_admin(user_id):
            return UploadResult(False, "Only policy admins can remove documents.")
        if not id_or_title.strip():
            return UploadResult(False, "Say which document to remove, e.g. `remove Travel Policy`.")
        removed = remove_document(self.runtime.sessions, id_or_title)
        if removed is None:
            return UploadResult(False, f"No document called “{id_or_title}”. Use `list` to see the titles.")
        return UploadResult(True, f"Removed “{removed.title}”. Answers no longer use it.", removed.title,
                            removed.version, 0, "removed")


def _source(marker: int, passage: Passage) -> Source:
    snippet = passage.text if len(passage.text) <= SNIPPET_CHARS else passage.text[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return Source(marker=marker, document=passage.title, source=passage.source, section=passage.section,
                  page=passage.page, link=passage.link, snippet=snippet, document_id=passage.document_id)


def _snapshot(passage: Passage) -> dict:
    return {
        "chunk_id": passage.chunk_id, "document_id": passage.document_id, "document_version": passage.document_version,
        "title": passage.title, "section": passage.section, "page": passage.page, "text": passage.text,
        "score": passage.score, "audiences": list(passage.audiences),
    }


def _is_refusal(text: str) -> bool:
    lowered = text.lower()
    return any(p in lowered for p in ("not covered", "don't cover", "do not cover", "couldn't find", "not in our polic",
                                      "no information"))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
