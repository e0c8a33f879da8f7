"""The core's contract: plain values in, plain values out. Adapters render these; they never see SQL or Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


RATEABLE_KINDS = frozenset({"llm", "extractive", "fallback", "refusal"})


@dataclass(frozen=True)
class Source:
    """A cited source, numbered as it appears in the answer text ([1], [2], ...)."""

    marker: int
    document: str  # document title
    source: str  # file name or URL the document came from
    section: str  # section path, e.g. "Paid Time Off › Carry-over"
    page: int | None
    link: str | None
    snippet: str
    document_id: int | None = None


@dataclass(frozen=True)
class Answer:
    interaction_id: str
    text: str  # with inline [n] markers that refer to `sources`
    sources: list[Source]
    grounded: bool  # every claim backed by at least one valid citation; refusals and errors are not grounded
    cached: bool
    model: str
    kind: str  # llm | extractive | fallback (LLM failed, extractive used) | refusal | smalltalk | limited
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str | None = None  # e.g. "Your question was cut to 2,000 characters."
    question: str = ""  # the question as answered (after cutting and follow-up rewriting)
    rewritten_question: str | None = None  # set when a follow-up was read with the earlier turns; shown to the user
    recorded: bool = True  # False when the turn could not be stored: a vote on it would have nothing to attach to
    audiences: tuple[str, ...] = ("everyone",)  # the document audiences the answer could read (bot/audiences.py)

    @property
    def rateable(self) -> bool:
        """Whether adapters offer 👍/👎: answers and refusals that were recorded (not small talk or errors)."""
        return self.recorded and self.kind in RATEABLE_KINDS

    def as_json(self) -> dict:
        """The `policybot ask --json` shape."""
        return {
            "id": self.interaction_id,
            "answer": self.text,
            "citations": [
                {"marker": s.marker, "document": s.document, "source": s.source, "section": s.section,
                 "page": s.page, "link": s.link}
                for s in self.sources
            ],
            "grounded": self.grounded,
            "cached": self.cached,
            "model": self.model,
            "kind": self.kind,
            "rewritten_question": self.rewritten_question,
            "audiences": list(self.audiences),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            **({"notice": self.notice} if self.notice else {}),
        }

    def to_cache(self) -> dict:
        data = asdict(self)
        data.pop("interaction_id")
        data.pop("timings_ms")
        data.pop("recorded")
        # Who asked, and how, belongs to this turn: another asker may reach the same key with other words.
        data.pop("notice")
        data.pop("rewritten_question")
        data.pop("audiences")  # in the cache key already; set again by the turn that reads it
        return data

    @classmethod
    def from_cache(cls, data: dict, interaction_id: str, timings_ms: dict[str, float]) -> "Answer":
        data = dict(data)
        data["sources"] = [Source(**s) for s in data.get("sources", [])]
        data["cached"] = True
        return cls(interaction_id=interaction_id, timings_ms=timings_ms, **data)


@dataclass(frozen=True)
class FeedbackResult:
    recorded: bool
    rating: int
    changed: bool  # the user had voted differently before
    message: str  # what to tell the user (privately)


@dataclass(frozen=True)
class UploadResult:
    ok: bool
    message: str  # what to tell the admin: the result, or a clear error
    title: str | None = None
    version: int | None = None
    chunks: int | None = None
    status: str | None = None  # created | updated | unchanged


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    title: str
    source: str
    link: str | None
    version: int
    chunks: int
    updated_at: str | None
    audiences: tuple[str, ...] = ("everyone",)
