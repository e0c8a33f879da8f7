"""Database engine and the declarative base shared by every table."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, exc
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
    engine = create_engine(normalize_url(url), pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(engine, "checkout")
    def check_alive(dbapi_connection, _record, _proxy) -> None:
        _check_alive(engine, dbapi_connection)

    return engine


def _check_alive(engine: Engine, dbapi_connection) -> None:
    """A restarted or terminated PostgreSQL must not surface as an error on the next question.

    Instead of SQLAlchemy's pool_pre_ping (a SELECT 1 round trip on every check-out, two or three per answer:
    90-170 us more of this process's CPU each, benchmarks/checkout.py, and PostgreSQL's on top), look at the
    socket first. An idle pooled connection has nothing to read, and a server that ends a connection (shutdown,
    restart, pg_terminate_backend) first sends it a FATAL message and closes it, so its socket turns readable.
    Only then is it pinged; a DisconnectionError makes the pool retry with a fresh connection. Something readable
    on a live connection (a stray notice) costs one ping. A link that dies without a word (a cut network) is
    found on first use, as it was with the ping (which would have waited just as long)."""
    if dbapi_connection.closed:
        raise exc.DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if not poller.poll(0):
        return
    try:
        engine.dialect.do_ping(dbapi_connection)
    except Exception as err:  # noqa: BLE001 - whatever the driver raised, this connection is done
        raise exc.DisconnectionError(f"the database ended this connection ({type(err).__name__})") from err


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
