"""Recording every answered turn, and reading a conversation's earlier turns back for follow-ups."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from bot.records import Interaction

log = logging.getLogger(__name__)

HISTORY_TURNS = 3
HISTORY_WINDOW = timedelta(hours=2)  # an old thread picked up days later starts afresh


# Built once: constructing a statement costs more CPU than running it from SQLAlchemy's compiled cache.
_INSERT = insert(Interaction.__table__)
_SET_MESSAGE_REF = (update(Interaction.__table__).where(Interaction.__table__.c.id == bindparam("interaction_id"))
                    .values(message_ref=bindparam("ref")))


def _one_statement(engine: Engine):
    """A connection for a single write, in autocommit: the statement is its own transaction, so psycopg sends
    no BEGIN and no COMMIT (two round trips of the four a turn's write took)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def record(engine: Engine, values: dict) -> None:
    """Insert one turn. A Core insert rather than the ORM's unit of work, which cost ~40% of an answer's CPU
    under load (benchmarks/README.md, load profile)."""
    with _one_statement(engine) as conn:
        conn.execute(_INSERT, values)


def record_with_retry(engine: Engine, values: dict, attempts: int = 4, first_wait_s: float = 0.25) -> bool:
    """Record a turn, riding out a short database outage (a restart takes well under a second).

    Returns False when it could not be stored after about two seconds of retries.
    """
    wait = first_wait_s
    for attempt in range(attempts):
        try:
            record(engine, values)
            return True
        except OperationalError as err:
            if attempt == attempts - 1:
                log.warning("recording interaction %s failed: %s", values.get("id"), type(err).__name__)
                return False
            time.sleep(wait)
            wait *= 2
        except SQLAlchemyError:
            log.exception("recording interaction %s failed", values.get("id"))
            return False
    return False


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


def set_message_ref(engine: Engine, interaction_id: str, message_ref: str) -> None:
    """Remember the platform's id for the message that carried an answer (Teams feedback names only that)."""
    with _one_statement(engine) as conn:
        conn.execute(_SET_MESSAGE_REF, {"interaction_id": interaction_id, "ref": message_ref})


def find_by_message_ref(sessions: sessionmaker, message_ref: str) -> str | None:
    with sessions() as session:
        return session.scalars(
            select(Interaction.id).where(Interaction.message_ref == message_ref).order_by(Interaction.created_at.desc())
        ).first()
