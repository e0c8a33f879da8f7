"""The bot under load (benchmarks/load.py, benchmarks/faults.py): `policybot serve` as a subprocess, its
environment (the fakes' URLs, the signing secret and bot token the load generator and the fakes use), and the
sample handbook ingested with `policybot ingest`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from benchmarks.fakes_process import Fakes

SIGNING_SECRET = "load-test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-bot-token"  # FakeSlack's default token
SAMPLE_HANDBOOK = ROOT / "knowledge" / "sample_handbook"


def stop_everything(servers, fakes, redis, pg) -> None:
    """What a benchmark started, stopped in reverse order (servers use the fakes, Redis and PostgreSQL); None or
    an empty list for what it never got to start."""
    for server in servers:
        server.stop()
    for service, stop in ((fakes, "stop"), (redis, "close"), (pg, "close")):
        if service is not None:
            getattr(service, stop)()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bot_env(pg_url: str, redis_url: str, fakes: Fakes, home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "MICROSOFT_APP_", "OPENAI_", "POLICYBOT_"))
           and k not in ("DATABASE_URL", "REDIS_URL", "PORT")}
    env.update({
        "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "POLICYBOT_HOME": str(home),
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": fakes.urls["slack_api"],
        "OPENAI_API_KEY": "load-test-key", "OPENAI_BASE_URL": fakes.urls["openai"], "POLICYBOT_CHAT_MODEL": "base-model",
    })
    env.update(extra)
    return env


def policybot_command() -> list[str]:
    script = Path(sys.executable).parent / "policybot"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from adapters.cli import run_main; sys.exit(run_main())"]


def ingest_handbook(env: dict) -> float:
    """`policybot ingest knowledge/sample_handbook` against the bot's database; returns seconds."""
    started = time.perf_counter()
    result = subprocess.run(policybot_command() + ["ingest", str(SAMPLE_HANDBOOK)], env=env, cwd=str(ROOT),
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"ingest failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def console_link(env: dict, user_id: str) -> str:
    """`policybot console-link USER_ID`: the one-time admin console sign-in link an admin asks for."""
    result = subprocess.run(policybot_command() + ["console-link", user_id], env=env, cwd=str(ROOT),
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"console-link failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


class BotServer:
    """`policybot serve` as a subprocess on 127.0.0.1; stop() sends SIGTERM (graceful: answers are drained)."""

    def __init__(self, env: dict, log_path: Path, workers: int = 1, answer_workers: int = 0) -> None:
        self.env = env
        self.workers = workers  # `serve --workers N`: N processes on this port (children of self.process)
        self.answer_workers = answer_workers  # `serve --answer-workers M` (children of self.process too)
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240) -> float:
        started = time.perf_counter()
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            policybot_command() + ["serve", "--host", "127.0.0.1", "--port", str(self.port),
                                   "--workers", str(self.workers), "--answer-workers", str(self.answer_workers)],
            env=self.env, cwd=str(ROOT), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"policybot serve exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except Exception:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"policybot serve not healthy after {timeout_s}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 45) -> dict:
        if self.process is None or self.process.poll() is not None:
            return {"exit_code": self.process.returncode if self.process else None, "seconds": 0.0}
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return {"exit_code": code, "seconds": round(time.perf_counter() - started, 2)}

    def log_summary(self, limit: int = 8) -> dict:
        """Warnings and errors in the server's JSON log, by message (numbers and ids folded)."""
        import re

        levels: Counter = Counter()
        messages: Counter = Counter()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = entry.get("level", "?")
            levels[level] += 1
            if level in ("warning", "error", "critical"):
                text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\b[\w:.|-]*\d[\w:.|-]*\b", "#", entry.get("message", ""))
                messages[f"{level}: {text[:140]}"] += 1
        return {"levels": dict(levels), "top": messages.most_common(limit)}
