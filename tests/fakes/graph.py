"""A small Microsoft Graph on 127.0.0.1 for tests: the bot's real HTTP client calls

    POST /v1.0/users/{id}/checkMemberGroups   {"groupIds": [...]}  ->  200 {"value": [the ids the user is in]}

with a bearer token, as Graph does (401 without the expected token, 400 over 20 ids, 404 for an unknown user,
Graph's error body). Tests set memberships (`set_groups`) and can make calls fail (`fail_next`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from tests.fakes.local_server import LocalHTTPServer


@dataclass
class FakeGraph(LocalHTTPServer):
    token: str = "graph-test-token"
    groups: dict[str, set[str]] = field(default_factory=dict)  # user object id -> group object ids
    calls: list[dict] = field(default_factory=list)
    failures: int = 0  # the next N calls answer 503
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FakeGraph":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._reply(status, {"error": {"code": code, "message": message}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("?")[0].strip("/").split("/")
                with fake._lock:
                    fake.calls.append({"path": self.path, "body": raw.decode(errors="replace")})
                    failing = fake.failures > 0
                    fake.failures -= failing
                if failing:
                    return self._error(503, "serviceNotAvailable", "Service unavailable")
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
                if len(parts) != 4 or parts[0] != "v1.0" or parts[1] != "users" or parts[3] != "checkMemberGroups":
                    return self._error(404, "Request_ResourceNotFound", "Resource not found.")
                user = unquote(parts[2])
                try:
                    ids = json.loads(raw or b"{}")["groupIds"]
                except (ValueError, KeyError):
                    return self._error(400, "Request_BadRequest", "groupIds is required.")
                if len(ids) > 20:
                    return self._error(400, "Request_BadRequest", "At most 20 groupIds.")
                with fake._lock:
                    if user not in fake.groups:
                        return self._error(404, "Request_ResourceNotFound", f"User '{user}' does not exist.")
                    member = fake.groups[user]
                self._reply(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
                                  "value": [g for g in ids if g in member]})

        self._serve(Handler)
        return self

    @property
    def url(self) -> str:
        return f"{self.origin}/v1.0"

    def set_groups(self, user: str, groups: set[str]) -> None:
        with self._lock:
            self.groups[user] = set(groups)

    def fail_next(self, times: int = 1) -> None:
        with self._lock:
            self.failures += times
