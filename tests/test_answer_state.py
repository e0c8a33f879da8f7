"""The corpus version and active model kept in memory (bot/answer_state.py): read from the database only when
PostgreSQL's notifications cannot vouch for the copy, and never stale after a change, whoever made it."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import event, text

from bot import answer_state as state_module


def _database_reads(engine) -> list[str]:
    """The answer-state statements run on `engine` from now on (a live list)."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if "FROM corpus_state" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    return seen


def _listening(state, timeout_s: float = 10.0) -> None:
    state.current()  # starts the listener
    deadline = time.monotonic() + timeout_s
    while not state._fresh():
        assert time.monotonic() < deadline, "the listener never came up"
        time.sleep(0.02)


def _libpq_url(engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_kept_in_memory_while_listening(runtime):
    state = runtime.answer_state
    _listening(state)
    reads = _database_reads(runtime.engine)
    first = state.current()
    assert [state.current() for _ in range(20)] == [first] * 20
    assert len(reads) <= 1  # at most the read that filled the copy


def test_change_from_another_process_is_seen_at_once(runtime):
    """A write on a connection of its own (as the CLI or another server would): the trigger's notification
    drops the copy, so the next question reads the new version."""
    state = runtime.answer_state
    _listening(state)
    before, _ = state.current()
    with psycopg.connect(_libpq_url(runtime.engine), autocommit=True) as other:
        other.execute("UPDATE corpus_state SET version = version + 1 WHERE id = 1")
    deadline = time.monotonic() + 2.0
    while state.current()[0] == before:
        assert time.monotonic() < deadline, "the change was never noticed"
        time.sleep(0.01)
    assert state.current()[0] == before + 1


def test_change_in_this_process_is_seen_by_its_next_question(runtime):
    """No waiting for the notification: this process's own commit drops the copy (an upload, then a question)."""
    state = runtime.answer_state
    _listening(state)
    before, _ = state.current()
    for _ in range(5):
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE corpus_state SET version = version + 1 WHERE id = 1"))
        before += 1
        assert state.current()[0] == before


def test_an_upload_changes_the_answer_state_the_core_uses(runtime):
    from bot.core import PolicyBot

    runtime.settings = runtime.settings.model_copy(update={"admins": ["UADMIN"]})
    bot = PolicyBot(runtime)
    state = runtime.answer_state
    _listening(state)
    before, _ = state.current()
    result = bot.upload("UADMIN", "remote-work.md",
                        b"# Remote work\n\nEmployees may work remotely up to three days a week.\n")
    assert result.ok, result.message
    assert state.current()[0] > before


def test_without_a_listener_every_call_reads_the_database(runtime):
    """The listener's connection killed: until it is back, the copy is not trusted."""
    state = runtime.answer_state
    _listening(state)
    with psycopg.connect(_libpq_url(runtime.engine), autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = %s", (state_module.APPLICATION_NAME,)).fetchone()[0]
        assert killed >= 1
        deadline = time.monotonic() + 5.0
        while state._fresh():
            assert time.monotonic() < deadline, "a dead listener still vouched for the copy"
            time.sleep(0.01)
        reads = _database_reads(runtime.engine)
        admin.execute("UPDATE corpus_state SET version = version + 1 WHERE id = 1")
        version = admin.execute("SELECT version FROM corpus_state WHERE id = 1").fetchone()[0]
    assert state.current()[0] == version
    assert reads  # read, not remembered
    _listening(state)  # and it comes back by itself


def test_a_silent_listener_stops_vouching(runtime, monkeypatch):
    """No sign of life for STALE_AFTER_S (a connection that hangs without closing): read the database."""
    state = runtime.answer_state
    _listening(state)
    monkeypatch.setattr(state_module, "STALE_AFTER_S", 0.0)
    reads = _database_reads(runtime.engine)
    state.current()
    state.current()
    assert len(reads) == 2
