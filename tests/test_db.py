"""The engine's check-out test (knowledge/db.py): a connection the server ended is replaced before use, a live
one is handed out without a round trip, and a live one with something to read survives its ping."""

from __future__ import annotations

import select

import pytest
from sqlalchemy import create_engine, text

from knowledge.db import make_engine


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url, pool_size=1)
    pings = []
    real_ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or real_ping(dbapi_connection)
    engine.pings = pings
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_live_connection_is_reused_without_a_ping(engine):
    first = _backend_pid(engine)
    assert [_backend_pid(engine) for _ in range(5)] == [first] * 5
    assert engine.pings == []


def test_a_connection_the_server_ended_is_replaced_before_use(engine, db_url):
    """What a PostgreSQL restart does to every pooled connection: FATAL, then the socket closes."""
    first = _backend_pid(engine)
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # timeout: wait until the backend is gone (it sends its FATAL message and closes the socket)
            assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first}).scalar_one()
    finally:
        admin.dispose()
    second = _backend_pid(engine)  # no error: the next question does not see it
    assert second != first
    assert engine.pings == [1]
    assert _backend_pid(engine) == second and engine.pings == [1]


def test_a_live_connection_with_something_to_read_survives_its_ping(engine, db_url):
    with engine.connect() as conn:
        first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.execute(text("LISTEN policybot_test_db"))
        conn.commit()
        pooled_socket = conn.connection.dbapi_connection.fileno()
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as other:
            other.execute(text("NOTIFY policybot_test_db"))
    finally:
        admin.dispose()
    # The notification reaches the idle connection's socket a moment after NOTIFY returns: wait for it.
    assert select.select([pooled_socket], [], [], 10)[0], "the notification never arrived"
    assert _backend_pid(engine) == first
    assert engine.pings == [1]
