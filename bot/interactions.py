"""Recording every answered turn, and reading a conversation's earlier turns back for follow-ups."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from bot.records import Interaction

log = logging.getLogger(__name__)

HISTORY_TURNS = 3
HISTORY_WINDOW = timedelta(hours=2)  # an old thread picked up days later starts afresh


def record(sessions: sessionmaker, interaction: Interaction) -> None:
    with sessions.begin() as session:
        session.add(interaction)


def record_with_retry(sessions: sessionmaker, interaction: Interaction, attempts: int = 4,
                      first_wait_s: float = 0.25) -> bool:
    """Record a turn, riding out a short database outage (a restart takes well under a second).

    Returns False when it could not be stored after about two seconds of retries.
    """
    wait = first_wait_s
    for attempt in range(attempts):
        try:
            record(sessions, make_transient_copy(interaction))
            return True
        except OperationalError as err:
            if attempt == attempts - 1:
                log.warning("recording interaction %s failed: %s", interaction.id, type(err).__name__)
                return False
            time.sleep(wait)
            wait *= 2
        except SQLAlchemyError:
            log.exception("recording interaction %s failed", interaction.id)
            return False
    return False


def make_transient_copy(interaction: Interaction) -> Interaction:
    """A fresh ORM object per attempt: a failed session leaves the old one in an unusable state."""
    return Interaction(**{c.key: getattr(interaction, c.key) for c in Interaction.__table__.columns
                          if getattr(interaction, c.key) is not None})


def history(sessions: sessionmaker, platform: str, conversation_id: str | None) -> list[tuple[str, str]]:
    """(standalone question, answer) of the conversation's recent question turns, oldest first."""
    if not conversation_id:
        return []
    since = datetime.now(timezone.utc) - HISTORY_WINDOW
    with sessions() as session:
        rows = session.execute(
            select(Interaction.question, Interaction.rewritten_question, Interaction.answer)
            .where(
                Interaction.platform == platform,
                Interaction.conversation_id == conversation_id,
                Interaction.created_at >= since,
                Interaction.kind.not_in(("smalltalk", "limited")),
            )
            .order_by(Interaction.created_at.desc())
            .limit(HISTORY_TURNS)
        ).all()
    return [(r.rewritten_question or r.question, r.answer) for r in reversed(rows)]


def set_message_ref(sessions: sessionmaker, interaction_id: str, message_ref: str) -> None:
    """Remember the platform's id for the message that carried an answer (Teams feedback names only that)."""
    with sessions.begin() as session:
        session.execute(update(Interaction).where(Interaction.id == interaction_id).values(message_ref=message_ref))


def find_by_message_ref(sessions: sessionmaker, message_ref: str) -> str | None:
    with sessions() as session:
        return session.scalars(
            select(Interaction.id).where(Interaction.message_ref == message_ref).order_by(Interaction.created_at.desc())
        ).first()
