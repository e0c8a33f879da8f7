"""What the answer core reads before each question: the corpus version and the active chat model (the model
registry's read side; the registry itself is bot/finetune/registry.py).

`AnswerState` keeps them in memory while PostgreSQL is known to say when they change: migration 0007's
triggers NOTIFY on CHANNEL whenever corpus_state or model_versions is written (by any process: an upload, the
CLI, a promotion), and one thread per process LISTENs. So a question served from the cache reads nothing from
the database. Whenever the listener cannot vouch for the copy (not yet listening, its connection lost, no sign
of life for STALE_AFTER_S) every call reads the database, as before.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from knowledge.db import reading

log = logging.getLogger(__name__)

CHANNEL = "policybot_answer_state"
APPLICATION_NAME = "policybot answer-state listener"
HEARTBEAT_S = 1.0  # the listener proves its connection alive this often (a SELECT 1 on it)
STALE_AFTER_S = 3.0  # a copy is used only while the last sign of life is younger than this
_TABLES = ("corpus_state", "model_versions")  # what migration 0007's triggers watch
_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCA")
_DIRTY = "policybot_answer_state_written"

_STATE = text(
    "SELECT c.version AS corpus_version, "
    "(SELECT model_id FROM model_versions WHERE status = 'active' LIMIT 1) AS active_model "
    "FROM corpus_state c WHERE c.id = 1"
)


def answer_state(session: Session) -> tuple[int, str | None]:
    """Corpus version and active fine-tuned model (None: use the configured base model), in one round trip."""
    row = session.execute(_STATE).one()
    return int(row.corpus_version), row.active_model


class AnswerState:
    """answer_state() kept until PostgreSQL says it changed. The listener starts with the first `current()`."""

    def __init__(self, engine: Engine, sessions: sessionmaker) -> None:
        self.engine = engine
        self.sessions = sessions
        self._lock = threading.Lock()
        self._state: tuple[int, str | None] | None = None
        self._epoch = 0  # bumped by every change heard of: a read that started before one must not be kept
        self._alive_at = float("-inf")  # monotonic time of the listener's last sign of life
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # A change made by this process is forgotten at its commit, before the caller's next question (which
        # could otherwise come before the notification): the notification covers the other processes.
        event.listen(engine, "before_cursor_execute", self._note_write)
        event.listen(engine, "commit", self._on_commit)

    def current(self) -> tuple[int, str | None]:
        """(corpus version, active model), from memory when the listener vouches for it, else from the database."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="answer-state-listener", daemon=True)
                self._thread.start()
            if self._state is not None and self._fresh():
                return self._state
            epoch = self._epoch
        with reading(self.sessions) as session:
            state = answer_state(session)
        with self._lock:
            if self._epoch == epoch and self._fresh():  # nothing changed while it was read: keep it
                self._state = state
        return state

    def invalidate(self) -> None:
        """Forget the copy: this process has just changed the corpus or the models (its own next question must
        not wait for the notification to come back)."""
        with self._lock:
            self._epoch += 1
            self._state = None

    def _note_write(self, conn, _cursor, statement: str, _parameters, _context, _executemany) -> None:
        if statement[:6].upper() in _WRITES and any(table in statement for table in _TABLES):
            conn.info[_DIRTY] = True

    def _on_commit(self, conn) -> None:
        if conn.info.pop(_DIRTY, False):
            self.invalidate()

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._note_write)
        event.remove(self.engine, "commit", self._on_commit)
        self._stop.set()  # the listener (a daemon thread) ends within HEARTBEAT_S and closes its connection

    def _fresh(self) -> bool:
        return time.monotonic() - self._alive_at < STALE_AFTER_S

    def _listen(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            connection = None
            try:
                pooled = self.engine.raw_connection()
                pooled.detach()  # its own connection for good, outside the pool's count
                connection = pooled.dbapi_connection
                connection.autocommit = True
                connection.execute(f"SET application_name = '{APPLICATION_NAME}'")  # seen in pg_stat_activity
                connection.execute(f"LISTEN {CHANNEL}")
                self.invalidate()  # whatever was read before listening may have missed a change
                backoff = 0.5
                while not self._stop.is_set():
                    connection.execute("SELECT 1")  # alive: any notification sent before it has arrived
                    with self._lock:
                        self._alive_at = time.monotonic()
                    for _ in connection.notifies(timeout=HEARTBEAT_S):
                        self.invalidate()
            except Exception as err:  # PostgreSQL restarting or unreachable: read the database meanwhile
                if not self._stop.is_set():
                    log.warning("not listening for corpus and model changes (%s); reading them per question", err)
            finally:
                with self._lock:
                    self._alive_at = float("-inf")
                    self._state = None
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
