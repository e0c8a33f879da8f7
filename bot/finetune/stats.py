"""Feedback insight: 👍/👎 by document and by ISO week, and the answers with the most 👎.

A vote counts for every document the answer cited (an answer citing two documents counts for both); votes
on answers that cited nothing (refusals, small talk) are listed under "(no document)". Cached copies of an
answer are grouped with it (same question, normalized, and same answer text). Evaluation runs (platform
"eval") have no feedback and are left out.

Audiences: stats for readers of some audiences (`audiences`) count only votes on answers whose every retrieved
or cited passage they may read (the document's current audiences; a removed one's as recorded), so neither a
restricted title nor a question answered from restricted text shows in a report meant for others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from bot.cache import normalize_question
from knowledge.audiences import EVERYONE, readable, reader_audiences

NO_DOCUMENT = "(no document)"

_VOTES = text(
    """
    SELECT f.rating, f.updated_at, f.comment, f.correction IS NOT NULL AS corrected,
           i.id AS interaction_id, coalesce(i.rewritten_question, i.question) AS question, i.answer, i.kind,
           i.citations, i.created_at, i.retrieved
    FROM feedback f JOIN interactions i ON i.id = f.interaction_id
    WHERE i.platform <> 'eval'
    ORDER BY f.updated_at
    """
)


def feedback_stats(sessions: sessionmaker, top: int = 10, audiences: Sequence[str] | None = None) -> dict:
    """The report; `audiences`: only what readers of those audiences may see (None: everything, for admins)."""
    with sessions() as session:
        rows = session.execute(_VOTES).all()
        current = {int(r.id): tuple(r.audiences or (EVERYONE,))
                   for r in session.execute(text("SELECT id, audiences FROM documents"))}
    if audiences is not None:
        readers = reader_audiences(audiences)
        rows = [row for row in rows if _visible(row, current, readers)]
    totals = {"up": 0, "down": 0, "corrections": 0}
    by_document: dict[str, dict] = defaultdict(lambda: {"up": 0, "down": 0})
    by_week: dict[str, dict] = defaultdict(lambda: {"up": 0, "down": 0})
    answers: dict[tuple[str, str], dict] = {}
    for row in rows:
        side = "up" if row.rating > 0 else "down"
        totals[side] += 1
        totals["corrections"] += bool(row.corrected)
        documents = sorted({c.get("document") or NO_DOCUMENT for c in (row.citations or [])}) or [NO_DOCUMENT]
        for document in documents:
            by_document[document][side] += 1
        year, week, _ = row.updated_at.isocalendar()
        by_week[f"{year}-W{week:02d}"][side] += 1
        key = (normalize_question(row.question), row.answer)
        entry = answers.setdefault(key, {
            "question": row.question, "answer": row.answer, "kind": row.kind, "documents": documents,
            "interaction_id": row.interaction_id, "up": 0, "down": 0, "corrections": 0, "comments": [],
        })
        entry[side] += 1
        entry["corrections"] += bool(row.corrected)
        if row.comment and row.rating < 0 and len(entry["comments"]) < 3:
            entry["comments"].append(row.comment)
    worst = sorted((a for a in answers.values() if a["down"]), key=lambda a: (-a["down"], a["up"], a["question"]))
    return {
        "totals": totals,
        "by_document": [{"document": d, **v} for d, v in sorted(by_document.items(),
                                                               key=lambda kv: (-kv[1]["down"], -kv[1]["up"], kv[0]))],
        "by_week": [{"week": w, **v} for w, v in sorted(by_week.items())],
        "most_disliked": worst[:top],
    }


def _visible(row, current: dict[int, tuple[str, ...]], readers: tuple[str, ...]) -> bool:
    recorded: dict[int, tuple[str, ...]] = {}
    for passage in row.retrieved or []:
        if passage.get("document_id") is not None:
            recorded[int(passage["document_id"])] = tuple(passage.get("audiences") or (EVERYONE,))
    documents = set(recorded) | {int(c["document_id"]) for c in row.citations or [] if c.get("document_id") is not None}
    return all(readable(current.get(d) or recorded.get(d) or (EVERYONE,), readers) for d in documents)


def render(stats: dict) -> str:
    totals = stats["totals"]
    lines = [f"👍 {totals['up']}  👎 {totals['down']}  corrections {totals['corrections']}", "", "By document:"]
    if not stats["by_document"]:
        lines.append("  (no feedback yet)")
    for row in stats["by_document"]:
        lines.append(f"  👍 {row['up']:>4}  👎 {row['down']:>4}  {row['document']}")
    lines += ["", "By ISO week:"]
    for row in stats["by_week"]:
        lines.append(f"  {row['week']}  👍 {row['up']:>4}  👎 {row['down']:>4}")
    lines += ["", "Answers with the most 👎:"]
    for number, row in enumerate(stats["most_disliked"], 1):
        answer = row["answer"] if len(row["answer"]) <= 160 else row["answer"][:159] + "…"
        lines.append(f"  {number}. 👎 {row['down']} 👍 {row['up']}  Q: {row['question']}")
        lines.append(f"     A: {answer}")
        for comment in row["comments"]:
            lines.append(f"     “{comment}”")
    return "\n".join(lines)
