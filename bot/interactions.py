"""Recording every answered turn, and reading a conversation's earlier turns back for follow-ups."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from bot.records import Interaction

HISTORY_TURNS = 3
HISTORY_WINDOW = timedelta(hours=2)  # an old thread picked up days later starts afresh


def record(sessions: sessionmaker, interaction: Interaction) -> None:
    with sessions.begin() as session:
        session.add(interaction)


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
