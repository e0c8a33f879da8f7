"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

The real `openai` client talks to it over HTTP. By default it answers chat completions deterministically from
the sources in the prompt (first sentence of source 1, cited [1]); tests can queue scripted replies
(status codes such as 429/500, delays, bad citations) and read back every request it received.

A request with `"stream": true` is answered as the real API streams: server-sent events, one
`chat.completion.chunk` per word, the first after `first_token_s`, then `tokens_per_s` (a usage chunk when
`stream_options.include_usage` asks for one), then `data: [DONE]`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable

from tests.fakes.local_server import LocalHTTPServer


@dataclass
class Scripted:
    status: int = 200
    content: str | None = None  # chat reply text (status 200)
    delay_s: float = 0.0
    body: dict | None = None  # raw JSON body instead of a generated one
    first_token_s: float | None = None  # streaming: overrides the server's first_token_s / tokens_per_s
    tokens_per_s: float | None = None


@dataclass
class FakeOpenAI(LocalHTTPServer):
    delay_s: float = 0.0  # added to every chat completion (load tests)
    first_token_s: float = 0.0  # streamed replies: wait before the first token ...
    tokens_per_s: float = 0.0  # ... then this many words a second (0: all at once)
    embedding_dim: int = 32
    embedding_delay_s: float = 0.0  # each /embeddings request takes this long (ingestion benchmarks and tests)
    embedding_in_flight: int = 0
    embedding_max_in_flight: int = 0  # the most /embeddings requests it was answering at once
    requests: list[dict] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    routes: dict[tuple[str, str], Callable] = field(default_factory=dict)  # extra endpoints (fine-tuning)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict | bytes, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0].rstrip("/")
                path = path[3:] if path.startswith("/v1") else path
                with fake._lock:
                    fake.requests.append({"method": method, "path": path, "headers": dict(self.headers), "raw": raw,
                                          "json": _try_json(raw, self.headers.get("Content-Type", ""))})
                handler = fake._find(method, path)
                if handler is None:
                    self._reply(404, {"error": {"message": f"no route {method} {path}", "type": "invalid_request"}})
                    return
                status, body = handler(fake, self, raw)
                if isinstance(body, Streamed):
                    self._stream(body)
                else:
                    self._reply(status, body)

            def _stream(self, streamed: "Streamed") -> None:
                """Server-sent events, each written (and flushed) when its time comes; the end of the
                connection ends the body, as with a proxy that does not chunk."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for delay, event in streamed.events():
                        if delay:
                            time.sleep(delay)
                        self.wfile.write(f"data: {event}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
                    pass

            def do_POST(self):
                self._handle("POST")

            def do_GET(self):
                self._handle("GET")

            def do_DELETE(self):
                self._handle("DELETE")

        self._serve(Handler)
        return self

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # ------------------------------------------------------------------ helpers for tests
    def chat_requests(self) -> list[dict]:
        return [r["json"] for r in self.requests if r["path"] == "/chat/completions"]

    def queue(self, *replies: Scripted) -> None:
        self.script.extend(replies)

    def _find(self, method: str, path: str):
        if (method, path) in self.routes:
            return self.routes[(method, path)]
        for (m, pattern), handler in self.routes.items():
            if m == method and re.fullmatch(pattern, path):
                return handler
        return _BUILTIN.get((method, path))


def _try_json(raw: bytes, content_type: str):
    if "json" not in content_type:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def default_reply(messages: list[dict]) -> str:
    """First sentence of source 1, cited; a refusal when the prompt has no sources. Deterministic."""
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    match = re.search(r'<source id="1"[^>]*>\n(.*?)\n</source>', user, re.S)
    if not match:
        if "<last_message>" in user:  # a follow-up rewrite request: echo with the subject
            last = re.search(r"<last_message>\n(.*?)\n</last_message>", user, re.S).group(1)
            first_q = re.search(r"Employee: (.*?)\n", user)
            return f"{first_q.group(1) if first_q else ''} {last}".strip()
        return "Our policies do not cover that. Please contact HR."
    sentence = re.split(r"(?<=[.!?])\s", match.group(1).strip(), maxsplit=1)[0]
    return f"According to our policy: {sentence} [1]"


def _chat(fake: FakeOpenAI, handler, raw: bytes):
    body = json.loads(raw or b"{}")
    scripted = fake.script.popleft() if fake.script else Scripted()
    delay = scripted.delay_s or fake.delay_s
    if delay:
        time.sleep(delay)
    if scripted.status != 200:
        return scripted.status, scripted.body or {"error": {"message": "scripted failure", "type": "server_error"}}
    if scripted.body is not None:
        return 200, scripted.body
    content = scripted.content if scripted.content is not None else default_reply(body.get("messages", []))
    first = scripted.first_token_s if scripted.first_token_s is not None else fake.first_token_s
    rate = scripted.tokens_per_s if scripted.tokens_per_s is not None else fake.tokens_per_s
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return 200, Streamed(content, body.get("model", "fake"), first, rate, usage, len(raw) // 4)
    if first or rate:  # the same model not streamed: the reply comes when the last word is written
        words = len(re.findall(r"\S+\s*|\s+", content))
        time.sleep(first + (max(words - 1, 0) / rate if rate else 0.0))
    return 200, {
        "id": "chatcmpl-" + hashlib.sha1(raw).hexdigest()[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(content) // 4,
                  "total_tokens": len(raw) // 4 + len(content) // 4},
    }


@dataclass(frozen=True)
class Streamed:
    """A streamed chat completion: what to say and how fast."""

    content: str
    model: str
    first_token_s: float
    tokens_per_s: float
    include_usage: bool
    prompt_tokens: int

    def events(self):
        """(seconds to wait first, JSON text) for each event, then [DONE]."""
        base = {"id": f"chatcmpl-stream{int(time.time() * 1000) % 10**9}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model}

        def chunk(delta: dict, finish: str | None = None) -> str:
            return json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        yield self.first_token_s, chunk({"role": "assistant", "content": ""})
        words = re.findall(r"\S+\s*|\s+", self.content)
        for i, word in enumerate(words):
            yield (1 / self.tokens_per_s if self.tokens_per_s and i else 0.0), chunk({"content": word})
        yield 0.0, chunk({}, "stop")
        if self.include_usage:
            yield 0.0, json.dumps({**base, "choices": [], "usage": {
                "prompt_tokens": self.prompt_tokens, "completion_tokens": len(words),
                "total_tokens": self.prompt_tokens + len(words)}})
        yield 0.0, "[DONE]"


def _embeddings(fake: FakeOpenAI, handler, raw: bytes):
    with fake._lock:
        fake.embedding_in_flight += 1
        fake.embedding_max_in_flight = max(fake.embedding_max_in_flight, fake.embedding_in_flight)
    try:
        if fake.embedding_delay_s:
            time.sleep(fake.embedding_delay_s)
        return _embedding_vectors(fake, raw)
    finally:
        with fake._lock:
            fake.embedding_in_flight -= 1


def _embedding_vectors(fake: FakeOpenAI, raw: bytes):
    body = json.loads(raw or b"{}")
    inputs = body.get("input", [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    data = []
    for i, text in enumerate(inputs):
        vector = [0.0] * fake.embedding_dim
        for word in str(text).lower().split():
            vector[hashlib.sha256(word.encode()).digest()[0] % fake.embedding_dim] += 1.0
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in vector]})
    return 200, {"object": "list", "data": data, "model": body.get("model", "fake"),
                 "usage": {"prompt_tokens": 1, "total_tokens": 1}}


_BUILTIN = {("POST", "/chat/completions"): _chat, ("POST", "/embeddings"): _embeddings}


# ---------------------------------------------------------------------- misbehaving models (scripted modes)
# Handlers for `FakeOpenAI.routes[("POST", "/chat/completions")]`: the ways a weak or broken model fails, each
# answering follow-up rewrites like the default fake so that only answers misbehave.

MISBEHAVIOURS = ("never_cites", "loops", "times_out", "copies_answer")
LOOP_PHRASE = "You can take your vacation days whenever you like and "


def _completion(body: dict, content: str, finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-" + hashlib.sha1(content.encode()).hexdigest()[:12], "object": "chat.completion",
        "created": int(time.time()), "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(content.split()), "total_tokens": 10 + len(content.split())},
    }


def misbehaving(mode: str, delay_s: float = 5.0) -> Callable:
    """never_cites: plain prose without markers; loops: repeats one phrase until max_tokens (finish_reason
    "length", as a real server stops it); times_out: answers only after `delay_s`; copies_answer: a rewrite
    request gets the previous answer back instead of a question."""
    if mode not in MISBEHAVIOURS:
        raise ValueError(f"mode must be one of {MISBEHAVIOURS}")

    def handler(fake: FakeOpenAI, http, raw: bytes):
        body = json.loads(raw or b"{}")
        messages = body.get("messages", [])
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if "<last_message>" in user:  # a follow-up rewrite
            if mode == "copies_answer":
                previous = re.findall(r"Assistant: (.*?)\n", user + "\n")
                return 200, _completion(body, previous[-1] if previous else "")
            return 200, _completion(body, default_reply(messages))
        if mode == "never_cites":
            return 200, _completion(body, "Our policy is generous, and you can ask your manager about the details.")
        if mode == "loops":
            words = (LOOP_PHRASE * 200).split()[: int(body.get("max_tokens") or 4096)]
            return 200, _completion(body, " ".join(words), "length")
        if mode == "times_out":
            time.sleep(delay_s)
        return 200, _completion(body, default_reply(messages))

    return handler
