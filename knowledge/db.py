"""Database engine and the declarative base shared by every table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    pass


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver whatever scheme the operator wrote (postgres://, postgresql://)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, pool_size: int = 10) -> Engine:
    # pre_ping: a restarted PostgreSQL must not surface as an error on the next question.
    return create_engine(normalize_url(url), pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def reading(sessions: sessionmaker) -> Iterator[Session]:
    """A session for reads (a search, the answer state), ended with COMMIT rather than the ROLLBACK of a plain close.

    Why: psycopg forgets every prepared statement of a connection on ROLLBACK (and DEALLOCATEs them on the server),
    because a rollback may have undone DDL. So the search statement, prepared once per connection, was parsed and
    planned again for every question (~1 ms of planning at 100k chunks) and never reached its cached generic plan.
    For a transaction that only read, COMMIT and ROLLBACK are the same to the data. On an error it rolls back."""
    with sessions() as session:
        yield session
        session.commit()
