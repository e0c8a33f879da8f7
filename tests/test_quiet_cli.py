"""The real `policybot` console script, as a user runs it: results on stdout and nothing else on stderr.

Subprocesses, because what is under test is what reaches file descriptors 1 and 2 of a real process: the
embedded PostgreSQL/Redis chatter, library warnings and child-process output that used to bury the result."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from adapters.cli import console, main
from tests.helpers import write

POLICYBOT = str(Path(sys.executable).with_name("policybot"))
LEAVE = ("# Leave Policy\n\n## Vacation\nFull-time employees receive 25 days of paid vacation per calendar year.\n\n"
         "## Sick leave\nEmployees may take up to 10 paid sick days per year.\n")
# Variables that would change what a run prints: each test says what it wants.
CLEARED = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "POLICYBOT_LOG_LEVEL", "POLICYBOT_HOME")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(values)
    return env


def policybot(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([POLICYBOT, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def served(db_url, redis_url, redis_client, tmp_path) -> dict[str, str]:
    """Environment for a subprocess on the test servers (cheaper than a cold embedded start)."""
    return _env(DATABASE_URL=db_url, REDIS_URL=redis_url, POLICYBOT_HOME=str(tmp_path / "home"))


def test_ingest_ask_search_docs_print_only_their_result(served, tmp_path):
    leave = write(tmp_path / "leave.md", LEAVE)
    done = policybot("ingest", str(leave), env=served)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ['[1/1] leave.md: created "Leave Policy" v1, 2 chunks']

    done = policybot("ask", "How many vacation days do I get?", env=served)
    assert (done.returncode, done.stderr) == (0, "")
    assert "25 days" in done.stdout and "[1] Leave Policy › Vacation" in done.stdout

    done = policybot("search", "sick days", "--json", env=served)
    assert (done.returncode, done.stderr) == (0, "")
    results = json.loads(done.stdout)["results"]
    assert results and results[0]["document"]["title"] == "Leave Policy"

    done = policybot("docs", "list", "--json", env=served)
    assert (done.returncode, done.stderr) == (0, "")
    assert [d["title"] for d in json.loads(done.stdout)["documents"]] == ["Leave Policy"]
    # What used to be on stderr is kept, in the log file.
    assert "database: using DATABASE_URL server" in (tmp_path / "home" / "policybot.log").read_text()


def test_ingest_json_is_only_json(served, tmp_path):
    folder = tmp_path / "handbook"
    write(folder / "leave.md", LEAVE)
    done = policybot("ingest", str(folder), "--json", env=served)
    assert (done.returncode, done.stderr) == (0, "")
    assert [r["status"] for r in json.loads(done.stdout)["results"]] == ["created"]


@pytest.mark.parametrize("args, extra", [
    (("-v", "docs", "list"), {}),
    (("docs", "list", "-v"), {}),  # after the subcommand too
    (("docs", "list"), {"POLICYBOT_LOG_LEVEL": "DEBUG"}),
])
def test_verbose_shows_the_logs(served, args, extra):
    done = policybot(*args, env={**served, **extra})
    assert done.returncode == 0
    assert "INFO bot.embedded_services: database: using DATABASE_URL server" in done.stderr


def test_errors_are_one_line_and_fail(served, tmp_path):
    done = policybot("docs", "remove", "No Such Policy", env=served)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "policybot: no document with id, title or source 'No Such Policy'; see `policybot docs list`"]

    # An unreachable database: psycopg's several-line message and SQLAlchemy's traceback become one line.
    home = tmp_path / "broken"
    broken = {**served, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "POLICYBOT_HOME": str(home)}
    done = policybot("ask", "How many vacation days do I get?", env=broken)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("policybot: error: ") and "Connection refused" in line
    assert f"details in {home / 'policybot.log'}" in line
    assert "Traceback" in (home / "policybot.log").read_text()

    done = policybot("docs", "list", env={**served, "POLICYBOT_CACHE_TTL": "a day"})
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("policybot: invalid setting: POLICYBOT_CACHE_TTL")


def test_embedded_services_start_quietly(tmp_path):
    """A cold start (initdb, pg_ctl, redis-server) on a fresh POLICYBOT_HOME prints nothing but the result."""
    home = Path(tempfile.mkdtemp(prefix="pbq"))  # short: PostgreSQL's unix socket path has a length limit
    try:
        env = _env(POLICYBOT_HOME=str(home))
        done = policybot("ingest", str(write(tmp_path / "leave.md", LEAVE)), env=env)
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.startswith("[1/1] leave.md: created")
        log = (home / "policybot.log").read_text()
        # The chatter is in the file, the embedded servers' stop included (atexit, after main returned).
        assert "initdb" in log and "embedded Redis" in log and "server stopped" in log
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_in_process_main_leaves_logging_and_stderr_as_it_found_them(db_url, redis_url, redis_client, tmp_path,
                                                                   monkeypatch, capsys):
    for key, value in (("DATABASE_URL", db_url), ("REDIS_URL", redis_url), ("POLICYBOT_HOME", str(tmp_path))):
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    handlers, level, stderr = list(root.handlers), root.level, sys.stderr
    assert main(["docs", "remove", "nothing"]) == 1
    assert "no document" in capsys.readouterr().err
    assert (root.handlers, root.level, sys.stderr) == (handlers, level, stderr)


def test_describe_gives_one_line():
    assert console.describe(ValueError("connection failed\n\tIs the server running?")) == "connection failed"
    assert console.describe(RuntimeError()) == "RuntimeError"
