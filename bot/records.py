"""Tables the bot writes: every answered turn, the feedback on it, and the model registry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, SmallInteger, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from knowledge.db import Base


class Interaction(Base):
    __tablename__ = "interactions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, handed to adapters
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    conversation_id: Mapped[str | None] = mapped_column(Text, index=True)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    rewritten_question: Mapped[str | None] = mapped_column(Text)
    retrieved: Mapped[list] = mapped_column(JSONB, nullable=False, default=list)  # chunk ids + text snapshot
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, nullable=False)
    citations: Mapped[list] = mapped_column(JSONB, nullable=False, default=list)
    grounded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cached: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # llm | extractive | refusal | smalltalk | ...
    corpus_version: Mapped[int | None] = mapped_column(Integer)
    timings: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # The platform's id of the message that carried the answer (Teams activity id, Slack ts).
    message_ref: Mapped[str | None] = mapped_column(Text, index=True)
    # A fallback (kind "fallback"): the model that was asked, why its reply was not used, and the reply (bounded).
    fallback_model: Mapped[str | None] = mapped_column(Text)
    fallback_reason: Mapped[str | None] = mapped_column(String(32))
    fallback_reply: Mapped[str | None] = mapped_column(Text)
    # The audiences the answer was allowed to read (where it was shown decides; bot/audiences.py). Migration 0002.
    audiences: Mapped[list[str] | None] = mapped_column(ARRAY(Text))


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("interaction_id", "user_id", name="feedback_one_vote_per_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    rating: Mapped[int] = mapped_column(SmallInteger, nullable=False)  # +1 / -1
    comment: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(Text, nullable=False)  # what the chat endpoint is called with
    provider: Mapped[str] = mapped_column(String(32), nullable=False)  # openai | local | base
    base_model: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(Text)
    dataset_hash: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="candidate")
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Escalation(Base):
    """A question an employee took to HR from an answer (bot.escalation); created by migration 0004."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("interaction_id", "user_id", name="escalations_one_per_user_and_answer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)  # who asked (kept even when shown as anonymous)
    anonymous: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    reply_to: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)  # where the reply goes (adapter's)
    hr_conversation: Mapped[str | None] = mapped_column(Text)
    hr_thread: Mapped[str | None] = mapped_column(Text)  # the HR channel thread's root (Slack ts, Teams id)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")  # open | answered | resolved
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_by: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(Text)
