"""What the admin console shows (adapters/admin), as plain values: recent turns, documents, and the figures
behind its charts. Read-only queries; the console's changes go through the core's own calls (upload, remove,
the model registry's promote and rollback)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from knowledge.ingest import list_documents

ANSWER_KINDS = ("llm", "extractive", "fallback", "refusal")  # the turns that answer (or refuse) a question


@dataclass(frozen=True)
class Turn:
    id: str
    created_at: datetime
    platform: str
    user_id: str
    question: str
    rewritten: str | None
    answer: str
    kind: str
    citations: list[dict]
    total_ms: float | None
    up: int
    down: int
    corrections: list[str]


@dataclass(frozen=True)
class DocumentRow:
    id: int
    title: str
    source: str
    link: str | None
    version: int
    chunks: int
    uploaded_by: str | None
    updated_at: datetime | None
    audiences: tuple[str, ...] = ()  # when the documents table has them (shown if present)


@dataclass(frozen=True)
class ChartData:
    weeks: list[dict]  # week, up, down, answers, refusals, refusal_rate
    days: list[dict]  # day, answers, p95_ms
    most_disliked_documents: list[dict]  # document, up, down (of the chart's weeks)


_TURNS = text(
    """
    SELECT i.id, i.created_at, i.platform, i.user_id, i.question, i.rewritten_question, i.answer, i.kind,
           i.citations, (i.timings->>'total')::float AS total_ms,
           count(f.id) FILTER (WHERE f.rating > 0) AS up, count(f.id) FILTER (WHERE f.rating < 0) AS down,
           coalesce(array_agg(f.correction) FILTER (WHERE f.correction IS NOT NULL), '{}') AS corrections
    FROM interactions i LEFT JOIN feedback f ON f.interaction_id = i.id
    WHERE i.platform <> 'eval'
      AND (:pattern = '' OR i.question ILIKE :pattern OR i.answer ILIKE :pattern
           OR coalesce(i.rewritten_question, '') ILIKE :pattern)
    GROUP BY i.id ORDER BY i.created_at DESC LIMIT :limit
    """
)

_WEEKS = text(
    """
    SELECT to_char(date_trunc('week', created_at), 'IYYY-"W"IW') AS week, count(*) AS answers,
           count(*) FILTER (WHERE kind = 'refusal') AS refusals
    FROM interactions WHERE platform <> 'eval' AND kind IN ('llm', 'extractive', 'fallback', 'refusal')
      AND created_at >= :since
    GROUP BY 1 ORDER BY 1
    """
)

_DAYS = text(
    """
    SELECT to_char(date_trunc('day', created_at), 'YYYY-MM-DD') AS day, count(*) AS answers,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY (timings->>'total')::float) AS p95_ms
    FROM interactions WHERE platform <> 'eval' AND kind IN ('llm', 'extractive', 'fallback', 'refusal')
      AND created_at >= :since
    GROUP BY 1 ORDER BY 1
    """
)


# 👍/👎 by people; an HR member's answer to an escalation is stored as a 👎 with a correction (for training) and is
# left out here: it is not a verdict on the bot.
_PEOPLE_VOTES = """
    FROM feedback f JOIN interactions i ON i.id = f.interaction_id
    WHERE i.platform <> 'eval' AND f.updated_at >= :since
      AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.interaction_id = f.interaction_id
                      AND e.answered_by = f.user_id)
"""

_VOTE_WEEKS = text(
    "SELECT to_char(date_trunc('week', f.updated_at), 'IYYY-\"W\"IW') AS week, "
    "count(*) FILTER (WHERE f.rating > 0) AS up, count(*) FILTER (WHERE f.rating < 0) AS down"
    + _PEOPLE_VOTES + "GROUP BY 1 ORDER BY 1"
)

_VOTE_DOCUMENTS = text(
    "SELECT d.document, count(*) FILTER (WHERE f.rating > 0) AS up, count(*) FILTER (WHERE f.rating < 0) AS down"
    + _PEOPLE_VOTES.replace("WHERE i.platform",
                            "CROSS JOIN LATERAL (SELECT DISTINCT c->>'document' AS document "
                            "FROM jsonb_array_elements(i.citations) c) d WHERE i.platform")
    + "GROUP BY 1 HAVING count(*) FILTER (WHERE f.rating < 0) > 0 ORDER BY 3 DESC, 2, 1 LIMIT :top"
)


def _like(search: str) -> str:
    search = (search or "").strip()[:200]
    if not search:
        return ""
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def recent_turns(sessions: sessionmaker, search: str = "", limit: int = 50) -> list[Turn]:
    with sessions() as session:
        rows = session.execute(_TURNS, {"pattern": _like(search), "limit": limit}).all()
    return [Turn(r.id, r.created_at, r.platform, r.user_id, r.question, r.rewritten_question, r.answer, r.kind,
                 list(r.citations or []), r.total_ms, r.up, r.down, list(r.corrections or [])) for r in rows]


def documents(sessions: sessionmaker) -> list[DocumentRow]:
    return [DocumentRow(d.id, d.title, d.source, d.link, d.version, d.chunk_count, d.uploaded_by, d.updated_at,
                        tuple(getattr(d, "audiences", None) or ()))
            for d in list_documents(sessions)]


def chart_data(sessions: sessionmaker, weeks: int = 12, days: int = 30, top_documents: int = 10) -> ChartData:
    now = datetime.now(timezone.utc)
    since_weeks = now - timedelta(weeks=weeks)
    with sessions() as session:
        week_rows = session.execute(_WEEKS, {"since": since_weeks}).all()
        day_rows = session.execute(_DAYS, {"since": now - timedelta(days=days)}).all()
        votes = {r.week: {"up": r.up, "down": r.down} for r in session.execute(_VOTE_WEEKS, {"since": since_weeks})}
        disliked = [{"document": r.document, "up": r.up, "down": r.down} for r in session.execute(
            _VOTE_DOCUMENTS, {"since": since_weeks, "top": top_documents})]
    week_names = sorted({r.week for r in week_rows} | set(votes))
    answers = {r.week: r for r in week_rows}
    week_list = []
    for week in week_names:
        row, vote = answers.get(week), votes.get(week, {"up": 0, "down": 0})
        count, refusals = (row.answers, row.refusals) if row else (0, 0)
        week_list.append({"week": week, "up": vote["up"], "down": vote["down"], "answers": count,
                          "refusals": refusals, "refusal_rate": refusals / count if count else 0.0})
    day_list = [{"day": r.day, "answers": r.answers, "p95_ms": float(r.p95_ms or 0.0)} for r in day_rows]
    return ChartData(week_list, day_list, disliked)
