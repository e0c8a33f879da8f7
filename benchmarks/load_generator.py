"""The load generator of benchmarks/load.py and benchmarks/faults.py: signed Slack events and Teams activities
(the payloads), the senders, the collector that reads back from the fakes process what the bot posted, and the
feedback clicker; what was sent and received is kept per question (Question, Request, Click).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.bot_server import SAMPLE_HANDBOOK, SIGNING_SECRET  # noqa: E402
from benchmarks.common import log  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.fakes_process import Fakes

QUESTIONS_FILE = SAMPLE_HANDBOOK / "questions.jsonl"


def load_questions() -> list[str]:
    with QUESTIONS_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line)["question"] for line in fh if line.strip()]


# --------------------------------------------------------------------------------------- payloads


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


# -------------------------------------------------------------------- senders, collector, clicker


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
    first_text_t: float | None = None  # Slack: when a streamed answer's first text appeared (chat.startStream)


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

    def end_in(self, seconds: float) -> None:
        """End the running load `seconds` from now (each sender checks the deadline before it sends)."""
        self.deadline = asyncio.get_running_loop().time() + seconds

    async def warm_up(self, servers: int = 1) -> list[float | None]:
        """Not measured: smalltalk, then one real question outside questions.jsonl per server. The first real
        question of a process loads the embedding model and calibrates the relevance threshold (bot/relevance.py);
        that cold start is timed here (e2e ms per server) and kept out of the measured steps."""
        self.phase = "warmup"
        for kind in ("mention", "dm", "teams", "mention", "teams"):
            await self.send_question(kind, "hello")
        firsts = [await self.send_question("mention", f"Who do I talk to about an office plant allowance (desk {i})?")
                  for i in range(servers)]  # consecutive questions go to consecutive servers
        await self.wait_answered(120)
        return [round((q.answers[0][0] - q.sent) * 1000, 1) if q.answers else None for q in firsts]

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
            if item["m"] == "chat.startStream":  # a streamed answer's first text; it counts once it is finished
                question = self.questions.get(f"{item['ch']}:{item['th']}")
                if question is not None and question.first_text_t is None:
                    question.first_text_t = item["t"]
            elif item["m"] in ("chat.postMessage", "chat.stopStream", "chat.update"):
                question = self.questions.get(f"{item['ch']}:{item['th']}")
                if question is None:
                    self.stray_slack.append(item)
                    continue
                if item["m"] == "chat.update" and question.answers:
                    continue  # a streamed answer rewritten in place (the same message), not a second answer
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
