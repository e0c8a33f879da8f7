"""Everything a process needs, built once from Settings and passed down: database, cache, embedder, LLM."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from bot import embedded_services
from bot.answer_state import AnswerState
from bot.config import Settings
from knowledge import index, migrate
from knowledge.db import make_engine, make_sessionmaker
from knowledge.embeddings import Embedder, LocalE5Embedder, OpenAIEmbedder, bulk_threads

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    redis: redis.Redis
    embedder: Embedder

    @cached_property
    def openai(self):
        """The chat client, or None when no endpoint is configured (extractive answers). Built without retries:
        the openai client retries timeouts and dropped connections too, so bot.llm retries 429/5xx itself."""
        return make_openai_client(self.settings, max_retries=0) if self.settings.llm_enabled else None

    @cached_property
    def answer_state(self) -> AnswerState:
        """The corpus version and active model, kept in memory while PostgreSQL notifies changes."""
        return AnswerState(self.engine, self.sessions)

    def close(self) -> None:
        if "answer_state" in self.__dict__:
            self.answer_state.close()
        self.engine.dispose()
        try:
            self.redis.close()
        except Exception:  # closing a dead connection must not mask the real shutdown reason
            pass


def make_openai_client(settings: Settings, timeout: float | None = None, max_retries: int | None = None):
    """The openai client with its own retries (429/5xx, backoff) and timeout; Azure's v1 endpoint works too."""
    import openai

    return openai.OpenAI(
        api_key=settings.openai_api_key or "unused",
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_s if timeout is None else timeout,
        max_retries=settings.llm_max_retries if max_retries is None else max_retries,
    )


def make_embedder(settings: Settings, bulk: bool = False) -> Embedder:
    """The configured embedder; `bulk` (ingest and reindex commands) embeds on every core it is given."""
    if settings.embeddings == "local":
        threads = bulk_threads(settings.embedding_bulk_threads) if bulk else settings.embedding_threads
        return LocalE5Embedder(threads=threads)
    if settings.embeddings == "openai":
        client = make_openai_client(settings)
        return OpenAIEmbedder(client=client, model=settings.embedding_model, batch_size=settings.embedding_batch,
                              concurrency=settings.embedding_concurrency)
    raise ValueError(f"POLICYBOT_EMBEDDINGS must be 'local' or 'openai', not {settings.embeddings!r}")


def build_runtime(settings: Settings, apply_migrations: bool = True, *, bulk: bool = False) -> Runtime:
    """Connect everything; raises EmbeddingMismatch when the stored index needs `policybot reindex`."""
    engine = make_engine(embedded_services.database_url(settings))
    if apply_migrations:
        migrate.upgrade(engine)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        redis=embedded_services.redis_client(settings),
        embedder=make_embedder(settings, bulk=bulk),
    )
    with runtime.sessions() as session:
        index.check_compatible(session, runtime.embedder)
    return runtime
