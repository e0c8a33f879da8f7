"""A small Bot Framework connector (the Bot Connector REST API a bot replies to) on 127.0.0.1, for tests.

Tests set it as the activity's serviceUrl; botbuilder's real ConnectorClient then POSTs the bot's replies to

    POST /v3/conversations/{conversationId}/activities                 (send to conversation)
    POST /v3/conversations/{conversationId}/activities/{replyToId}     (reply to an activity)

and it answers {"id": "<new activity id>"} and records every activity. Streaming as Teams does it: an activity
whose `streaminfo` entity names a streamId is answered with that id (the streamed message keeps it), and
`fail_stream()` makes the next streaming activities fail (429 Too Many Requests, 403 ContentStreamNotAllowed). It also serves files for the upload tests
(GET /files/{name}, registered with `add_file`: bytes, content type, status, e.g. 404 or an HTML page) and logs
every request, so a test can check that a file was never downloaded.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from tests.fakes.local_server import LocalHTTPServer


@dataclass
class Sent:
    conversation_id: str
    reply_to_id: str | None
    activity_id: str
    activity: dict
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def type(self) -> str:
        return self.activity.get("type", "")

    @property
    def text(self) -> str:
        return self.activity.get("text") or ""

    @property
    def stream(self) -> dict | None:
        """The activity's streaminfo entity (streamType, streamId, streamSequence), if any."""
        return next((e for e in self.activity.get("entities") or [] if e.get("type") == "streaminfo"), None)


@dataclass
class FakeFile:
    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200


@dataclass
class FakeConnector(LocalHTTPServer):
    sent: list[Sent] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    peers: list[int] = field(default_factory=list)  # the client's port of every POST: one per TCP connection
    authorizations: list[str | None] = field(default_factory=list)  # the Authorization header of every POST
    files: dict[str, FakeFile] = field(default_factory=dict)
    stream_failures: dict[str, list[int]] = field(default_factory=dict)  # streamType -> statuses to answer
    refused: list[dict] = field(default_factory=list)  # activities answered with a scripted failure
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeConnector":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                with fake._lock:
                    fake.requests.append(("GET", path))
                name = unquote(path[len("/files/"):]) if path.startswith("/files/") else None
                file = fake.files.get(name) if name else None
                if file is None:
                    self._reply(404, b'{"error": "not found"}')
                    return
                self._reply(file.status, file.body, file.content_type)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                with fake._lock:
                    fake.requests.append(("POST", path))
                    fake.peers.append(self.client_address[1])
                    fake.authorizations.append(self.headers.get("Authorization"))
                parts = path.strip("/").split("/")
                # v3 / conversations / {id} / activities [/ {replyToId}]
                if len(parts) in (4, 5) and parts[:2] == ["v3", "conversations"] and parts[3] == "activities":
                    try:
                        activity = json.loads(raw or b"{}")
                    except ValueError:
                        self._reply(400, b'{"error": {"code": "BadSyntax", "message": "not JSON"}}')
                        return
                    with fake._lock:
                        info = next((e for e in activity.get("entities") or [] if isinstance(e, dict)
                                     and e.get("type") == "streaminfo"), None)
                        failing = fake.stream_failures.get(info.get("streamType")) if info else None
                        if failing:
                            status = failing.pop(0)
                            fake.refused.append(activity)
                        else:
                            status = None
                    if status is not None:
                        code = "ContentStreamNotAllowed" if status == 403 else "TooManyRequests"
                        self._reply(status, json.dumps({"error": {"code": code, "message": "scripted"}}).encode())
                        return
                    with fake._lock:
                        activity_id = (info or {}).get("streamId") or f"bot-{next(fake._ids)}"
                        fake.sent.append(Sent(unquote(parts[2]), unquote(parts[4]) if len(parts) == 5 else None,
                                              activity_id, activity, time.monotonic()))
                    self._reply(200, json.dumps({"id": activity_id}).encode())
                    return
                self._reply(404, json.dumps({"error": {"code": "NotFound", "message": path}}).encode())

            def do_PUT(self):
                self.do_POST()

        self._serve(Handler)
        return self

    @property
    def service_url(self) -> str:
        return f"{self.origin}/"

    # ------------------------------------------------------------------ helpers for tests
    def add_file(self, name: str, body: bytes, content_type: str = "application/octet-stream",
                 status: int = 200) -> str:
        """Serve `body` at /files/{name}; returns its download URL."""
        self.files[name] = FakeFile(body, content_type, status)
        return f"{self.service_url}files/{name}"

    def fail_stream(self, status: int = 429, times: int = 1, stream_type: str = "streaming") -> None:
        """The next `times` activities of `stream_type` (informative, streaming, final) are refused with `status`."""
        with self._lock:
            self.stream_failures.setdefault(stream_type, []).extend([status] * times)

    def messages(self, conversation_id: str | None = None) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.type == "message"
                    and (conversation_id is None or s.conversation_id == conversation_id)]

    def of_type(self, kind: str) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.type == kind]

    def downloads(self) -> list[str]:
        with self._lock:
            return [path for method, path in self.requests if method == "GET" and path.startswith("/files/")]

    def wait_for_messages(self, count: int, conversation_id: str | None = None, timeout_s: float = 20.0) -> list[Sent]:
        """Poll (bounded) until at least `count` messages have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.messages(conversation_id)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages(conversation_id))}: "
                             f"{[m.text[:80] for m in self.messages(conversation_id)]}")
