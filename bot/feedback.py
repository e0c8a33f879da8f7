"""👍/👎 on answers: one vote per user per answer (a new vote replaces the old), with optional comment and
correction. This is the raw material of the fine-tuning datasets."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from bot.contract import FeedbackResult

_UPSERT = text(
    """
    WITH previous AS (
        SELECT rating FROM feedback WHERE interaction_id = :interaction_id AND user_id = :user_id
    )
    INSERT INTO feedback (interaction_id, user_id, platform, rating, comment, correction)
    VALUES (:interaction_id, :user_id, :platform, :rating, :comment, :correction)
    ON CONFLICT (interaction_id, user_id) DO UPDATE SET
        rating = excluded.rating,
        comment = coalesce(excluded.comment, feedback.comment),
        correction = coalesce(excluded.correction, feedback.correction),
        updated_at = now()
    RETURNING (SELECT rating FROM previous) AS previous_rating
    """
)


def record_feedback(
    sessions: sessionmaker,
    interaction_id: str,
    user_id: str,
    platform: str,
    rating: int,
    comment: str | None = None,
    correction: str | None = None,
) -> FeedbackResult:
    if rating not in (1, -1):
        return FeedbackResult(False, rating, False, "A rating is 👍 (+1) or 👎 (-1).")
    comment = (comment or "").strip()[:4000] or None
    correction = (correction or "").strip()[:8000] or None
    try:
        with sessions.begin() as session:
            previous = session.execute(
                _UPSERT,
                {"interaction_id": interaction_id, "user_id": user_id, "platform": platform, "rating": rating,
                 "comment": comment, "correction": correction},
            ).scalar_one()
    except IntegrityError:  # the interaction does not exist (an old or forged id)
        return FeedbackResult(False, rating, False, "I couldn't find that answer any more, so the vote was not saved.")
    changed = previous is not None and previous != rating
    if rating > 0:
        message = "Thanks for the 👍! Glad that helped."
    else:
        message = "Thanks for telling us. We use 👎 votes to improve the answers."
    if changed:
        message = "Vote changed. " + message
    return FeedbackResult(True, rating, changed, message)
