"""A small Slack Web API server on 127.0.0.1 for tests: the bot's real slack_sdk client talks to it over HTTP.

    POST /api/<method>     records the call (method, form or JSON body, headers) and answers like Slack
    GET  /files/<id>/<name> serves files added with add_file() (the bot must send its token, as with Slack),
                           or redirects to where add_file(redirect=...) says
    POST /response/<id>    a slash command's response_url; recorded as method "response_url"

Tests can make a method fail a number of times (`fail("chat.postMessage", "ratelimited", status=429)`) or answer
slowly (`slow("chat.appendStream", 0.15)`), serve
Slack's HTML sign-in page instead of files, and wait for calls with a timeout.

Chat streaming as Slack does it: chat.startStream makes a message in the streaming state (its text is the
markdown of its chunks), chat.appendStream adds to it, chat.stopStream ends the streaming state and adds the
blocks; appending to or stopping a message that is not streaming answers `message_not_in_streaming_state`.
chat.update rewrites a message. `messages` keeps every message the bot made, by ts, as the user would see it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.fakes.local_server import LocalHTTPServer

LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><title>Slack</title></head>
<body><h1>Sign in to your workspace</h1><form action="/signin"></form></body></html>
"""


@dataclass
class Call:
    method: str
    headers: dict
    form: dict
    json: dict | None
    raw: bytes

    @property
    def args(self) -> dict:
        """The call's arguments, whether they came as JSON or as a form (form JSON values decoded)."""
        if self.json is not None:
            return self.json
        args = {}
        for key, value in self.form.items():
            try:
                args[key] = json.loads(value) if value[:1] in "[{" else value
            except ValueError:
                args[key] = value
        return args


@dataclass
class Failure:
    error: str
    status: int = 200
    retry_after: int | None = None


@dataclass
class FakeFile:
    meta: dict
    data: bytes
    content_type: str
    chunked: bool = False
    redirect: str | None = None  # answer an authorized download with a 302 to this URL


@dataclass
class FakeSlack(LocalHTTPServer):
    token: str = "xoxb-test-bot-token"
    team_id: str = "T0POLICY"
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    login_page: bool = False  # answer file downloads with the HTML sign-in page (an auth failure, as Slack does)
    socket_url: str | None = None  # what apps.connections.open hands out (Socket Mode's WebSocket URL)
    calls: list[Call] = field(default_factory=list)
    downloads: list[dict] = field(default_factory=list)
    files: dict[str, FakeFile] = field(default_factory=dict)
    failures: dict[str, deque] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # method -> seconds each call takes; slow()
    messages: dict[str, dict] = field(default_factory=dict)  # ts -> {channel, thread_ts, text, blocks, streaming}
    # User groups for usergroups.list / usergroups.users.list: id -> (handle, member user ids); set_usergroup()
    usergroups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict | bytes, content_type: str = "application/json",
                       headers: dict | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a size limit)
                    self.close_connection = True

            def _reply_chunked(self, data: bytes, content_type: str) -> None:
                """No Content-Length: the reader only learns the size by reading."""
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for start in range(0, len(data), 256 * 1024):
                        piece = data[start:start + 256 * 1024]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                content_type = self.headers.get("Content-Type", "")
                body_json = None
                form: dict = {}
                if "json" in content_type:
                    body_json = json.loads(raw or b"{}")
                else:
                    form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
                if path.startswith("/response/"):
                    fake._record(Call("response_url", dict(self.headers), form, body_json, raw))
                    self._reply(200, b"ok", "text/plain")
                    return
                if not path.startswith("/api/"):
                    self._reply(404, {"ok": False, "error": "not_found"})
                    return
                method = path[len("/api/"):]
                call = Call(method, dict(self.headers), form, body_json, raw)
                fake._record(call)
                failure = fake._next_failure(method)
                if failure is not None:
                    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                    self._reply(failure.status, {"ok": False, "error": failure.error}, headers=headers)
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.token}" and method != "apps.connections.open":
                    self._reply(200, {"ok": False, "error": "invalid_auth"})
                    return
                time.sleep(fake.delays.get(method, 0.0))
                self._reply(200, fake._answer(method, call.args))

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path.startswith("/api/"):  # some methods (files.info) are sent as GET with a query string
                    method = path[len("/api/"):]
                    form = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
                    call = Call(method, dict(self.headers), form, None, b"")
                    fake._record(call)
                    failure = fake._next_failure(method)
                    if failure is not None:
                        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                        self._reply(failure.status, {"ok": False, "error": failure.error}, headers=headers)
                    elif self.headers.get("Authorization") != f"Bearer {fake.token}":
                        self._reply(200, {"ok": False, "error": "invalid_auth"})
                    else:
                        self._reply(200, fake._answer(method, call.args))
                    return
                if not path.startswith("/files/"):
                    self._reply(404, b"not found", "text/plain")
                    return
                file_id = path.split("/")[2]
                authorized = self.headers.get("Authorization") == f"Bearer {fake.token}"
                with fake._lock:
                    fake.downloads.append({"path": path, "authorized": authorized, "headers": dict(self.headers)})
                entry = fake.files.get(file_id)
                if fake.login_page or not authorized:
                    self._reply(200, LOGIN_PAGE, "text/html; charset=utf-8")  # what Slack does on an auth failure
                elif entry is None:
                    self._reply(404, b"not found", "text/plain")
                elif entry.redirect:
                    self._reply(302, b"", "text/plain", headers={"Location": entry.redirect})
                elif entry.chunked:
                    self._reply_chunked(entry.data, entry.content_type)
                else:
                    self._reply(200, entry.data, entry.content_type)

        self._serve(Handler)
        return self

    @property
    def url(self) -> str:
        return self.origin

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # ------------------------------------------------------------------ scripting
    def fail(self, method: str, error: str, times: int = 1, status: int = 200, retry_after: int | None = None) -> None:
        """The next `times` calls of `method` fail with `error` (HTTP `status`, optional Retry-After)."""
        with self._lock:
            self.failures.setdefault(method, deque()).extend(Failure(error, status, retry_after) for _ in range(times))

    def slow(self, method: str, seconds: float) -> None:
        """Every later call of `method` takes `seconds` before it is answered (a busy Slack, a loaded machine)."""
        with self._lock:
            self.delays[method] = seconds

    def add_file(self, name: str, data: bytes, content_type: str = "application/octet-stream",
                 size: int | None = None, chunked: bool = False, redirect: str | None = None) -> dict:
        """A file as Slack describes it (the file object of a file_input or files.info); with `redirect`, its
        download answers 302 to that URL."""
        file_id = f"F{len(self.files) + 1:08d}"
        url = f"{self.url}/files/{file_id}/{name}"
        meta = {
            "id": file_id, "created": int(time.time()), "timestamp": int(time.time()), "name": name, "title": name,
            "mimetype": content_type, "filetype": name.rsplit(".", 1)[-1] if "." in name else "binary",
            "pretty_type": name.rsplit(".", 1)[-1].upper(), "user": "UADMIN", "user_team": self.team_id,
            "editable": False, "size": len(data) if size is None else size, "mode": "hosted", "is_external": False,
            "external_type": "", "is_public": False, "public_url_shared": False, "display_as_bot": False,
            "username": "", "url_private": url, "url_private_download": url + "?download=1",
            "permalink": f"https://example.slack.com/files/UADMIN/{file_id}/{name}", "is_starred": False,
            "has_rich_preview": False, "file_access": "visible",
        }
        self.files[file_id] = FakeFile(meta, data, content_type, chunked, redirect)
        return dict(meta)

    def set_usergroup(self, group_id: str, handle: str, users: list[str]) -> None:
        """Create or change a user group (what an admin does in Slack); the bot sees it on its next lookup."""
        with self._lock:
            self.usergroups[group_id] = (handle, list(users))

    # ------------------------------------------------------------------ reading back
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 15.0) -> list[Call]:
        """Poll (without blocking the event loop) until `method` was called `count` times."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.calls_to(method)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"{method} called {len(found)} times, expected {count}; calls: {seen}")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ internals
    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _next_failure(self, method: str) -> Failure | None:
        with self._lock:
            queue = self.failures.get(method)
            return queue.popleft() if queue else None

    def _new_ts(self) -> str:
        return f"{1767000000 + next(self._ts)}.000100"

    def _answer(self, method: str, args: dict) -> dict:
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url} if self.socket_url else {"ok": False, "error": "not_allowed"}
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "policybot",
                    "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                    "is_enterprise_install": False}
        if method == "chat.postMessage":
            ts = self._new_ts()
            message = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "ts": ts,
                       "text": args.get("text", ""), "blocks": args.get("blocks", [])}
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            channel = args.get("channel", "")
            if channel.startswith(("U", "W")):  # posting to a user id goes to the app's DM with them
                channel = "D" + channel[1:]
            with self._lock:
                self.messages[ts] = {"channel": channel, "thread_ts": args.get("thread_ts"),
                                     "text": args.get("text", ""), "blocks": args.get("blocks") or [],
                                     "streaming": False, "streamed": False}
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.startStream":
            ts = self._new_ts()
            with self._lock:
                self.messages[ts] = {"channel": args.get("channel"), "thread_ts": args.get("thread_ts"),
                                     "text": (args.get("markdown_text") or "") + _chunk_text(args), "blocks": [],
                                     "streaming": True, "streamed": True}
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if method in ("chat.appendStream", "chat.stopStream"):
            with self._lock:
                stored = self.messages.get(args.get("ts", ""))
                if stored is None:
                    return {"ok": False, "error": "message_not_found"}
                if not stored["streaming"]:
                    return {"ok": False, "error": "message_not_in_streaming_state"}
                stored["text"] += (args.get("markdown_text") or "") + _chunk_text(args)
                if method == "chat.stopStream":
                    stored["streaming"] = False
                    stored["blocks"] = args.get("blocks") or []
            return {"ok": True, "channel": stored["channel"], "ts": args["ts"]}
        if method == "chat.update":
            with self._lock:
                stored = self.messages.get(args.get("ts", ""))
                if stored is None:
                    return {"ok": False, "error": "message_not_found"}
                stored.update(text=args.get("text", ""), blocks=args.get("blocks") or [], streaming=False,
                              updated=True)
            return {"ok": True, "channel": stored["channel"], "ts": args["ts"], "text": args.get("text", "")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._new_ts()}
        if method == "views.open":
            view = args.get("view") or {}
            return {"ok": True, "view": {**view, "id": "V0000001", "team_id": self.team_id, "state": {"values": {}},
                                         "hash": "1.abc", "app_id": "A0POLICY", "bot_id": self.bot_id}}
        if method in ("assistant.threads.setStatus", "assistant.threads.setSuggestedPrompts"):
            return {"ok": True}
        if method == "files.info":
            entry = self.files.get(args.get("file", ""))
            if entry is None:
                return {"ok": False, "error": "file_not_found"}
            return {"ok": True, "file": dict(entry.meta), "comments": [], "response_metadata": {"next_cursor": ""}}
        if method == "usergroups.list":
            with self._lock:
                groups = [{"id": gid, "team_id": self.team_id, "is_usergroup": True, "name": handle.title(),
                           "handle": handle, "user_count": len(users), "date_delete": 0}
                          for gid, (handle, users) in self.usergroups.items()]
            return {"ok": True, "usergroups": groups}
        if method == "usergroups.users.list":
            with self._lock:
                entry = self.usergroups.get(args.get("usergroup", ""))
            if entry is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(entry[1])}
        return {"ok": False, "error": "unknown_method"}


def _chunk_text(args: dict) -> str:
    """The markdown of a stream call's `chunks` (slack_sdk 3.48 sends text as markdown_text chunks)."""
    return "".join(c.get("text", "") for c in args.get("chunks") or [] if isinstance(c, dict)
                   and c.get("type") == "markdown_text")


# ---------------------------------------------------------------------------------------------------------
# Slack's side of the bot's Request URL: payloads shaped like Slack's, signed like Slack signs them.

_counter = itertools.count(1)


def new_ts() -> str:
    return f"{int(time.time())}.{next(_counter):06d}"


def new_event_id() -> str:
    return f"Ev{int(time.time())}{next(_counter):06d}"


def event_envelope(event: dict, event_id: str | None = None, team_id: str = "T0POLICY",
                   bot_user_id: str = "UBOT") -> dict:
    """An Events API `event_callback` as Slack sends it."""
    return {
        "token": "legacy-verification-token", "team_id": team_id, "context_team_id": team_id,
        "api_app_id": "A0POLICY", "event": event, "type": "event_callback", "event_id": event_id or new_event_id(),
        "event_time": int(time.time()), "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIn0",
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def _rich_text(text: str) -> list[dict]:
    return [{"type": "rich_text", "block_id": "b1", "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}]


def app_mention(text: str, user: str = "U1", channel: str = "C1", ts: str | None = None,
                thread_ts: str | None = None, bot_user_id: str = "UBOT") -> dict:
    ts = ts or new_ts()
    event = {"user": user, "type": "app_mention", "ts": ts, "client_msg_id": f"m-{ts}",
             "text": f"<@{bot_user_id}> {text}", "team": "T0POLICY", "blocks": _rich_text(text), "channel": channel,
             "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    return event


def message(text: str, user: str = "U1", channel: str = "D1", channel_type: str = "im", ts: str | None = None,
            thread_ts: str | None = None, **extra) -> dict:
    """A `message` event (message.im by default; channel_type "channel" for message.channels)."""
    ts = ts or new_ts()
    event = {"user": user, "type": "message", "ts": ts, "client_msg_id": f"m-{ts}", "text": text,
             "team": "T0POLICY", "blocks": _rich_text(text), "channel": channel, "event_ts": ts,
             "channel_type": channel_type}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def slash_command(text: str, user: str, response_url: str, command: str = "/policy", channel: str = "C1") -> dict:
    return {
        "token": "legacy-verification-token", "team_id": "T0POLICY", "team_domain": "example",
        "channel_id": channel, "channel_name": "general", "user_id": user, "user_name": user.lower(),
        "command": command, "text": text, "api_app_id": "A0POLICY", "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": f"{next(_counter)}.1234567890.abcdef0123456789",
    }


def feedback_click(value: str, user: str, message_payload: dict, channel: str) -> dict:
    """block_actions from a feedback_buttons element, as Slack posts it (form field `payload`)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0POLICY"},
        "api_app_id": "A0POLICY", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_payload["ts"], "channel_id": channel,
                      "is_ephemeral": False, **({"thread_ts": message_payload["thread_ts"]}
                                                if message_payload.get("thread_ts") else {})},
        "trigger_id": f"{next(_counter)}.1234567890.feedbacktrigger",
        "team": {"id": "T0POLICY", "domain": "example"}, "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": message_payload,
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0POLICY/1/abc",
        "actions": [{"type": "feedback_buttons", "action_id": "policybot_feedback",
                     "block_id": message_payload["blocks"][-1].get("block_id", "fb"), "value": value,
                     "text": {"type": "plain_text", "text": "👍" if value.startswith("+") else "👎", "emoji": True},
                     "action_ts": f"{time.time():.6f}"}],
    }


def view_submission(callback_id: str, user: str, values: dict, private_metadata: str = "") -> dict:
    """view_submission of a modal: state.values.<block_id>.<action_id> = {type, value | files ...}."""
    return {
        "type": "view_submission",
        "team": {"id": "T0POLICY", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0POLICY"},
        "api_app_id": "A0POLICY", "token": "legacy-verification-token",
        "trigger_id": f"{next(_counter)}.1234567890.viewtrigger",
        "view": {
            "id": "V0000001", "team_id": "T0POLICY", "type": "modal", "blocks": [],
            "private_metadata": private_metadata,
            "callback_id": callback_id, "state": {"values": values}, "hash": "1.abc",
            "title": {"type": "plain_text", "text": "Modal", "emoji": True}, "clear_on_close": False,
            "notify_on_close": False, "close": None, "submit": None, "previous_view_id": None,
            "root_view_id": "V0000001", "app_id": "A0POLICY", "external_id": "", "app_installed_team_id": "T0POLICY",
            "bot_id": "BBOT",
        },
        "response_urls": [], "is_enterprise_install": False, "enterprise": None,
    }


@dataclass
class Reply:
    status: int
    body: str
    elapsed_s: float

    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}


class SlackSender:
    """Sends signed requests to the bot's /slack/events with an aiohttp test client, as Slack does."""

    def __init__(self, client, signing_secret: str, path: str = "/slack/events") -> None:
        self.client = client
        self.secret = signing_secret
        self.path = path

    def sign(self, body: str, timestamp: int, secret: str | None = None) -> str:
        from slack_sdk.signature import SignatureVerifier

        return SignatureVerifier(secret or self.secret).generate_signature(timestamp=str(timestamp), body=body)

    async def send(self, body: str, content_type: str, headers: dict | None = None, timestamp: int | None = None,
                   secret: str | None = None) -> Reply:
        timestamp = int(time.time()) if timestamp is None else timestamp
        all_headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp),
                       "X-Slack-Signature": self.sign(body, timestamp, secret), **(headers or {})}
        started = time.perf_counter()
        response = await self.client.post(self.path, data=body.encode(), headers=all_headers)
        text = await response.text()
        return Reply(response.status, text, time.perf_counter() - started)

    async def event(self, event: dict, event_id: str | None = None, retry_num: int | None = None, **kw) -> Reply:
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        return await self.send(json.dumps(event_envelope(event, event_id)), "application/json", headers, **kw)

    async def command(self, payload: dict) -> Reply:
        from urllib.parse import urlencode

        return await self.send(urlencode(payload), "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict) -> Reply:
        from urllib.parse import urlencode

        return await self.send(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
