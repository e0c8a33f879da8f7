"""HR in the loop: an employee takes an answer (or a refusal) to a person.

    "Ask HR" on an answer ─► open()         a row (who, when, where to reply), and what to post in the HR channel
                         ─► thread_posted() the HR channel thread it was posted as
    HR reply in thread   ─► reply()         stored as the answer and as the interaction's correction
                                            (feedback by the HR member: `finetune export` uses it), relayed
    "Mark resolved"      ─► resolve()

The policy lives here once; the adapters only turn platform events into these calls and render the results.
`reply_to` is the adapter's own note of where the employee is reached (a Slack channel, a Teams conversation
reference), stored as given and handed back with the relay.

Who may answer: POLICYBOT_HR_USERS, or the admins when it is unset (Settings.hr_members). A reply by anyone
else in an HR thread is not relayed (colleagues may discuss a case before answering).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from bot import feedback as feedback_store
from bot.config import Settings
from bot.contract import RATEABLE_KINDS, Source
from bot.records import Escalation, Interaction

log = logging.getLogger(__name__)

OPEN, ANSWERED, RESOLVED = "open", "answered", "resolved"
MAX_REPLY_CHARS = 8000


@dataclass(frozen=True)
class HrPost:
    """What goes to the HR channel: the question, the bot's answer and its sources, and who asked."""

    escalation_id: int
    platform: str
    question: str
    answer: str
    sources: list[Source]
    asker: str | None  # the employee's platform id; None when they asked anonymously


@dataclass(frozen=True)
class Opened:
    ok: bool
    message: str  # what to tell the employee
    post: HrPost | None = None
    hr_channel: str | None = None


@dataclass(frozen=True)
class Relay:
    """An HR reply on its way to the employee."""

    escalation_id: int
    platform: str
    user_id: str  # the employee
    reply_to: dict
    question: str
    text: str
    answered_by: str


@dataclass(frozen=True)
class Resolved:
    ok: bool
    message: str
    hr_conversation: str | None = None
    hr_thread: str | None = None


@dataclass(frozen=True)
class EscalationInfo:
    id: int
    interaction_id: str
    platform: str
    asker: str | None  # None when anonymous
    question: str
    status: str
    created_at: datetime
    answered_at: datetime | None
    answered_by: str | None
    answer: str | None
    resolved_by: str | None

    @property
    def answer_seconds(self) -> float | None:
        return (self.answered_at - self.created_at).total_seconds() if self.answered_at else None


class Escalations:
    def __init__(self, sessions: sessionmaker, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    @property
    def hr_channel(self) -> str | None:
        return self.settings.hr_channel or None

    def is_hr(self, user_id: str) -> bool:
        return bool(user_id) and user_id in self.settings.hr_members

    # ------------------------------------------------------------------------------------------ employee side

    def open(self, interaction_id: str, user_id: str, platform: str, anonymous: bool, reply_to: dict) -> Opened:
        """An employee asks HR about an answer. One escalation per employee and answer."""
        if not self.hr_channel:
            return Opened(False, f"Asking HR from here isn't set up yet. Please contact {self.settings.hr_contact}.")
        with self.sessions.begin() as session:
            interaction = session.get(Interaction, interaction_id)
            if interaction is None or interaction.kind not in RATEABLE_KINDS:
                return Opened(False, "I couldn't find that answer any more. Please ask your question again, or "
                                     f"contact {self.settings.hr_contact}.")
            row = Escalation(interaction_id=interaction_id, platform=platform, user_id=user_id,
                             anonymous=bool(anonymous), reply_to=dict(reply_to or {}), status=OPEN)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return Opened(False, "You already asked HR about this answer; their reply will come here.")
            post = HrPost(row.id, platform, interaction.rewritten_question or interaction.question,
                          interaction.answer, [Source(**s) for s in interaction.citations or []],
                          None if anonymous else user_id)
        who = "anonymously " if anonymous else ""
        return Opened(True, f"I've asked the People team {who}about this. Their answer will come here.", post,
                      self.hr_channel)

    def thread_posted(self, escalation_id: int, hr_conversation: str, hr_thread: str) -> None:
        """Where the HR channel thread is, so replies in it find their escalation."""
        with self.sessions.begin() as session:
            session.execute(update(Escalation).where(Escalation.id == escalation_id)
                            .values(hr_conversation=hr_conversation, hr_thread=hr_thread))

    def abandon(self, escalation_id: int) -> None:
        """Posting to the HR channel failed: forget the row, so the employee can try again."""
        with self.sessions.begin() as session:
            session.execute(delete(Escalation).where(Escalation.id == escalation_id))

    # ------------------------------------------------------------------------------------------ HR side

    def find_thread(self, platform: str, hr_conversation: str, hr_thread: str) -> int | None:
        with self.sessions() as session:
            return session.scalars(select(Escalation.id).where(
                Escalation.platform == platform, Escalation.hr_conversation == hr_conversation,
                Escalation.hr_thread == hr_thread)).first()

    def reply(self, platform: str, hr_conversation: str, hr_thread: str, hr_user: str, text: str) -> Relay | None:
        """A message in an HR thread: relayed (and stored) when it is an escalation's thread and an HR member
        wrote it; None otherwise (not ours, someone else, or empty)."""
        text = (text or "").strip()[:MAX_REPLY_CHARS]
        if not text or not self.is_hr(hr_user):
            return None
        now = datetime.now(timezone.utc)
        with self.sessions.begin() as session:
            row = session.scalars(select(Escalation).where(
                Escalation.platform == platform, Escalation.hr_conversation == hr_conversation,
                Escalation.hr_thread == hr_thread).with_for_update()).first()
            if row is None:
                return None
            interaction = session.get(Interaction, row.interaction_id)
            if row.answered_at is None:
                row.answered_at = now
            row.answered_by, row.answer = hr_user, text
            if row.status == OPEN:
                row.status = ANSWERED
            relay = Relay(row.id, row.platform, row.user_id, dict(row.reply_to or {}),
                          interaction.rewritten_question or interaction.question, text, hr_user)
            interaction_id, interaction_platform = interaction.id, interaction.platform
        # The HR answer is what the bot should have said: an admin's correction of that interaction.
        stored = feedback_store.record_feedback(self.sessions, interaction_id, hr_user, interaction_platform, -1,
                                                comment=f"HR answer to escalation #{relay.escalation_id}",
                                                correction=text)
        if not stored.recorded:
            log.warning("HR answer to escalation %s not stored as a correction: %s", relay.escalation_id,
                        stored.message)
        return relay

    def resolve(self, escalation_id: int, user_id: str) -> Resolved:
        if not self.is_hr(user_id) and user_id not in self.settings.admins:
            return Resolved(False, "Only the People team can mark a question resolved.")
        with self.sessions.begin() as session:
            row = session.get(Escalation, escalation_id, with_for_update=True)
            if row is None:
                return Resolved(False, f"No escalation #{escalation_id}.")
            if row.status == RESOLVED:
                return Resolved(False, f"Escalation #{escalation_id} was already resolved by {row.resolved_by}.",
                                row.hr_conversation, row.hr_thread)
            row.status, row.resolved_at, row.resolved_by = RESOLVED, datetime.now(timezone.utc), user_id
            return Resolved(True, f"Escalation #{escalation_id} resolved.", row.hr_conversation, row.hr_thread)

    # ------------------------------------------------------------------------------------------ reading

    def recent(self, limit: int = 100, status: str | None = None) -> list[EscalationInfo]:
        query = (select(Escalation, Interaction.question, Interaction.rewritten_question)
                 .join(Interaction, Interaction.id == Escalation.interaction_id)
                 .order_by(Escalation.created_at.desc()).limit(limit))
        if status:
            query = query.where(Escalation.status == status)
        with self.sessions() as session:
            rows = session.execute(query).all()
        return [EscalationInfo(e.id, e.interaction_id, e.platform, None if e.anonymous else e.user_id,
                               rewritten or question, e.status, e.created_at, e.answered_at, e.answered_by,
                               e.answer, e.resolved_by)
                for e, question, rewritten in rows]

