"""A plain file host on 127.0.0.1 for download tests: files, redirects, and a record of every request's headers.

    GET /<path>   the bytes added with add(path, ...), or a redirect added with redirect(path, location)

The same server answers as http://127.0.0.1:PORT and http://localhost:PORT (`origin` and `other_origin`): two
host names for the host checks of POLICYBOT_DOWNLOAD_HOSTS, one process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalHTTPServer


@dataclass
class Seen:
    host: str
    path: str
    headers: dict


@dataclass
class FakeFileHost(LocalHTTPServer):
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FakeFileHost":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with fake._lock:
                    fake.seen.append(Seen((self.headers.get("Host") or "").split(":")[0], path, dict(self.headers)))
                headers: dict[str, str] = {}
                if path in fake.redirects:
                    status, body, content_type = 302, b"", "text/plain"
                    headers["Location"] = fake.redirects[path]
                elif path in fake.files:
                    status, (body, content_type) = 200, fake.files[path]
                else:
                    status, body, content_type = 404, b"not found", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self._serve(Handler)
        return self

    @property
    def other_origin(self) -> str:
        """The same server under a second host name."""
        return self.origin.replace("127.0.0.1", "localhost")

    def add(self, path: str, body: bytes, content_type: str = "text/markdown") -> str:
        self.files[path] = (body, content_type)
        return self.origin + path

    def redirect(self, path: str, location: str) -> str:
        self.redirects[path] = location
        return self.origin + path

    def requests_to(self, host: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.host == host]
