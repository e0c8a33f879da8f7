"""Slack end to end: `policybot serve`'s aiohttp app on 127.0.0.1 receives signed requests shaped like Slack's;
the bot's real slack_sdk client calls a local fake of the Slack Web API; PostgreSQL and Redis are real."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from adapters.platforms import PLATFORMS
from adapters.server import build_app
from adapters.slack.http import SLACK_KEY
from bot.core import PolicyBot
from bot.records import Interaction
from knowledge.ingest import ingest_file
from tests.fakes.openai_server import Scripted
from tests.fakes.slack_api import (
    FakeSlack,
    SlackSender,
    app_mention,
    feedback_click,
    message,
    new_event_id,
    new_ts,
    view_submission,
)
from tests.helpers import write

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADMIN = "UADMIN"

LEAVE = """# Leave & Absence <2026>

## Vacation
Full-time employees receive 25 days of paid vacation per calendar year.
Part-time employees receive vacation pro-rated to their contracted hours.
Unused vacation days can be carried over until March 31 of the next year.

## Sick Leave
Tell your manager before 10:00 on the first day of illness.
A doctor's note is needed from the fourth consecutive day of absence.
"""
LEAVE_LINK = "https://intranet.example.com/policies?id=leave&lang=en"


def run_async(test):
    """Run an async test body on a fresh event loop (the tests don't need pytest-asyncio)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


def slack_settings(settings, fake: FakeSlack, **extra):
    return settings.model_copy(update={"slack_signing_secret": SECRET, "slack_bot_token": fake.token,
                                       "slack_api_url": fake.api_url, "admins": [ADMIN], **extra})




@pytest.fixture
def slack_bot(runtime, fake_slack):
    runtime.settings = slack_settings(runtime.settings, fake_slack)
    return PolicyBot(runtime)


@asynccontextmanager
async def serving(bot: PolicyBot):
    """The bot's aiohttp app on 127.0.0.1; leaving the block shuts it down (and drains background answers)."""
    async with TestClient(TestServer(build_app(bot, PLATFORMS), host="127.0.0.1")) as client:
        yield SlackSender(client, SECRET)


def load_leave(runtime, tmp_path, link=LEAVE_LINK):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE), link=link)


def interactions(runtime) -> list[Interaction]:
    with runtime.sessions() as s:
        return list(s.query(Interaction).order_by(Interaction.created_at))


def votes(runtime) -> list[tuple]:
    with runtime.sessions() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT interaction_id, user_id, platform, rating, comment, correction FROM feedback ORDER BY id"))]


def context_texts(blocks: list[dict]) -> list[str]:
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


def feedback_values(blocks: list[dict]) -> tuple[str, str]:
    actions = [b for b in blocks if b["type"] == "context_actions"]
    assert len(actions) == 1, blocks
    element = actions[0]["elements"][0]
    assert element["type"] == "feedback_buttons"
    return element["positive_button"]["value"], element["negative_button"]["value"]


# --------------------------------------------------------------------------------------------- requests


@run_async
async def test_forged_and_stale_requests_get_401(slack_bot, fake_slack):
    async with serving(slack_bot) as slack:
        forged = await slack.event(app_mention("How many vacation days do I get?"), secret="not-the-secret")
        stale = await slack.event(app_mention("How many vacation days do I get?"), timestamp=int(time.time()) - 600)
        unsigned = await slack.client.post("/slack/events", data=b'{"type":"event_callback"}',
                                           headers={"Content-Type": "application/json"})
        challenge = await slack.send(json.dumps({"token": "t", "challenge": "3eZbrw1a", "type": "url_verification"}),
                                     "application/json")
    assert (forged.status, stale.status, unsigned.status) == (401, 401, 401)
    assert challenge.status == 200 and "3eZbrw1a" in challenge.body
    assert fake_slack.calls_to("chat.postMessage") == [] and interactions(slack_bot.runtime) == []


@run_async
async def test_mention_is_answered_in_its_thread_with_sources_and_feedback_buttons(slack_bot, fake_slack, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setattr("adapters.background.INDICATOR_DELAY_S", 0.0)  # any answer counts as slow: status first
    load_leave(slack_bot.runtime, tmp_path)
    mention = app_mention("How many vacation days do I get?", user="U1", channel="C1")
    async with serving(slack_bot) as slack:
        reply = await slack.event(mention)
        assert reply.status == 200
        [post] = await fake_slack.wait_for("chat.postMessage")

    args = post.args
    assert post.headers["Authorization"] == f"Bearer {fake_slack.token}"
    assert args["channel"] == "C1" and args["thread_ts"] == mention["ts"]
    blocks = args["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert any("25 days" in s and "[1]" in s for s in sections)
    # Sources: [n] <link|Title › Section>, with &, <, > escaped in the title and & in the link.
    assert ("[1] <https://intranet.example.com/policies?id=leave&amp;lang=en|"
            "Leave &amp; Absence &lt;2026&gt; › Vacation>") in context_texts(blocks)[0]
    assert "25 days" in args["text"] and "Sources: [1] Leave &amp; Absence &lt;2026&gt; › Vacation" in args["text"]

    [row] = interactions(slack_bot.runtime)
    assert feedback_values(blocks) == (f"+1:{row.id}", f"-1:{row.id}")
    assert row.platform == "slack" and row.user_id == "U1" and row.conversation_id == f"C1:{mention['ts']}"
    assert row.question == "How many vacation days do I get?"  # the @mention is not part of the question
    assert row.message_ref and row.message_ref.startswith("C1:")
    status = fake_slack.calls_to("assistant.threads.setStatus")[0].args
    assert status == {"channel_id": "C1", "thread_ts": mention["ts"], "status": "Searching the handbook…"}


@run_async
async def test_direct_message_is_answered(slack_bot, fake_slack, tmp_path, monkeypatch):
    monkeypatch.setattr("adapters.background.INDICATOR_DELAY_S", 30.0)  # any answer counts as quick: no status
    load_leave(slack_bot.runtime, tmp_path)
    dm = message("When do I need a doctor's note?", user="U7", channel="D7")
    async with serving(slack_bot) as slack:
        assert (await slack.event(dm)).status == 200
        [post] = await fake_slack.wait_for("chat.postMessage")
    assert post.args["channel"] == "D7" and post.args["thread_ts"] == dm["ts"]
    assert "fourth consecutive day" in post.args["text"]
    assert fake_slack.calls_to("assistant.threads.setStatus") == []
    [row] = interactions(slack_bot.runtime)
    assert row.user_id == "U7" and row.conversation_id == f"D7:{dm['ts']}"


@run_async
async def test_bot_messages_edits_and_own_messages_are_ignored(slack_bot, fake_slack, tmp_path):
    load_leave(slack_bot.runtime, tmp_path)
    ignored = [
        message("How many vacation days?", user="U2", bot_id="B0OTHER", subtype="bot_message"),
        message("How many vacation days?", user="UBOT", bot_id="BBOT"),  # our own answer in the DM
        {**message("", user="U1"), "subtype": "message_changed",
         "message": {"type": "message", "user": "U1", "text": "How many vacation days?", "ts": new_ts()}},
        {**message("", user="U1"), "subtype": "message_deleted"},
        {**app_mention("How many vacation days?"), "edited": {"user": "U1", "ts": new_ts()}},
        message("How many vacation days?", channel="C1", channel_type="channel"),  # channel chatter, no mention
    ]
    async with serving(slack_bot) as slack:
        for event in ignored:
            assert (await slack.event(event)).status == 200
        # A real question afterwards is answered: the server is fine, and it is the only answer.
        await slack.event(message("How many vacation days do I get?", user="U3", channel="D3"))
        await fake_slack.wait_for("chat.postMessage")
    # Leaving `serving` waited for every background task, so anything spawned by the ignored events is done.
    posts = fake_slack.calls_to("chat.postMessage")
    assert [p.args["channel"] for p in posts] == ["D3"]
    assert [r.user_id for r in interactions(slack_bot.runtime)] == ["U3"]


@run_async
async def test_thread_reply_continues_the_conversation(slack_bot, fake_slack, tmp_path):
    load_leave(slack_bot.runtime, tmp_path)
    first = app_mention("How many vacation days do I get?", channel="C1")
    async with serving(slack_bot) as slack:
        await slack.event(first)
        await fake_slack.wait_for("chat.postMessage")
        # A reply in that thread mentioning the bot, and one that doesn't (message.channels).
        await slack.event(app_mention("and for part-timers?", channel="C1", thread_ts=first["ts"]))
        await fake_slack.wait_for("chat.postMessage", 2)
        await slack.event(message("and when do they expire?", channel="C1", channel_type="channel",
                                  thread_ts=first["ts"]))
        await fake_slack.wait_for("chat.postMessage", 3)
        # A thread the bot never answered in is not its business.
        await slack.event(message("and for part-timers?", channel="C1", channel_type="channel",
                                  thread_ts=new_ts()))

    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 3 and all(p.args["thread_ts"] == first["ts"] for p in posts)
    assert "pro-rated" in posts[1].args["text"]
    # The user sees how the follow-up was read (a context line above the answer); a first question has none.
    assert "Reading this as" in json.dumps(posts[1].args["blocks"]) and "vacation" in json.dumps(posts[1].args["blocks"])
    assert "Reading this as" not in json.dumps(posts[0].args["blocks"])
    rows = interactions(slack_bot.runtime)
    assert [r.conversation_id for r in rows] == [f"C1:{first['ts']}"] * 3
    assert rows[0].rewritten_question is None
    assert rows[1].question == "and for part-timers?"
    assert rows[1].rewritten_question and "vacation" in rows[1].rewritten_question.lower()
    assert rows[2].rewritten_question and "vacation" in rows[2].rewritten_question.lower()


# --------------------------------------------------------------------------------------------- delivery


@run_async
async def test_retried_event_is_answered_once_across_processes(slack_bot, fake_slack, tmp_path, settings, embedder):
    from bot.runtime import build_runtime

    load_leave(slack_bot.runtime, tmp_path)
    other_runtime = build_runtime(slack_settings(settings, fake_slack))  # a second process: same DB and Redis
    other_runtime.embedder = embedder
    try:
        event, event_id = app_mention("How many vacation days do I get?"), new_event_id()
        async with serving(slack_bot) as first, serving(PolicyBot(other_runtime)) as second:
            replies = [await first.event(event, event_id),
                       await second.event(event, event_id, retry_num=1),
                       await first.event(event, event_id, retry_num=2)]
            await fake_slack.wait_for("chat.postMessage")
    finally:
        other_runtime.close()
    assert [r.status for r in replies] == [200, 200, 200]
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # both servers drained: no late second answer
    assert len(interactions(slack_bot.runtime)) == 1


@run_async
async def test_ack_comes_before_a_slow_answer_and_shutdown_waits_for_it(llm_policybot, fake_openai, fake_slack,
                                                                        tmp_path):
    bot = llm_policybot
    bot.settings = bot.runtime.settings = slack_settings(bot.settings, fake_slack)
    load_leave(bot.runtime, tmp_path)
    fake_openai.queue(Scripted(delay_s=1.0, content="Full-time employees get 25 days of vacation a year [1]."))
    async with serving(bot) as slack:
        adapter = slack.client.server.app[SLACK_KEY]
        await slack.event(app_mention("hello"))  # warm-up (smalltalk, no LLM): the first request pays for auth.test
        await fake_slack.wait_for("chat.postMessage")
        await adapter.background.drain()
        reply = await slack.event(app_mention("How many vacation days do I get?"))
        assert reply.status == 200 and reply.elapsed_s < 0.5, reply.elapsed_s  # measured ~10 ms
        assert len(fake_slack.messages) == 1  # the answer is still being written
        assert len(adapter.background.tasks) == 1
    # Shutting down waited for the answer instead of dropping it (streamed: adapters.slack.stream).
    greeting, answer = fake_slack.messages.values()
    assert "25 days" in answer["text"] and not answer["streaming"] and not adapter.background.tasks


@run_async
async def test_rate_limited_post_is_retried_and_the_answer_arrives(slack_bot, fake_slack, tmp_path):
    load_leave(slack_bot.runtime, tmp_path)
    fake_slack.fail("chat.postMessage", "ratelimited", times=1, status=429, retry_after=1)
    async with serving(slack_bot) as slack:
        await slack.event(app_mention("How many vacation days do I get?", channel="C9"))
        posts = await fake_slack.wait_for("chat.postMessage", 2)
    assert [p.args["channel"] for p in posts] == ["C9", "C9"] and posts[0].args == posts[1].args
    assert len(interactions(slack_bot.runtime)) == 1 and interactions(slack_bot.runtime)[0].message_ref


@run_async
async def test_unreachable_channel_sends_the_answer_to_the_dm_and_keeps_the_question(slack_bot, fake_slack, tmp_path):
    load_leave(slack_bot.runtime, tmp_path)
    fake_slack.fail("chat.postMessage", "channel_not_found", times=1)
    async with serving(slack_bot) as slack:
        await slack.event(app_mention("How many vacation days do I get?", user="U5", channel="C404"))
        posts = await fake_slack.wait_for("chat.postMessage", 2)
    assert posts[0].args["channel"] == "C404" and posts[1].args["channel"] == "U5"
    assert "couldn't reply where you asked" in posts[1].args["text"] and "25 days" in posts[1].args["text"]
    [row] = interactions(slack_bot.runtime)
    assert row.user_id == "U5" and "25 days" in row.answer  # recorded by the core whatever Slack said


@run_async
async def test_other_post_failures_are_logged_and_the_server_keeps_going(slack_bot, fake_slack, tmp_path, caplog):
    load_leave(slack_bot.runtime, tmp_path)
    fake_slack.fail("chat.postMessage", "ratelimited", times=4, status=429, retry_after=0)  # more than the retries
    async with serving(slack_bot) as slack:
        await slack.event(app_mention("How many vacation days do I get?", channel="C1"))
        await fake_slack.wait_for("chat.postMessage", 4)
        await slack.event(message("When do I need a doctor's note?", channel="D2"))
        posts = await fake_slack.wait_for("chat.postMessage", 5)
    assert posts[-1].args["channel"] == "D2"
    assert "could not post an answer in C1: ratelimited" in caplog.text
    assert len(interactions(slack_bot.runtime)) == 2


# --------------------------------------------------------------------------------------------- agent messaging


@run_async
async def test_suggested_prompts_in_the_messages_tab_and_assistant_threads(slack_bot, fake_slack):
    async with serving(slack_bot) as slack:
        await slack.event({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home",
                           "event_ts": new_ts()})
        await slack.event({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "messages",
                           "event_ts": new_ts()})
        thread_ts = new_ts()
        await slack.event({"type": "assistant_thread_started", "event_ts": new_ts(), "assistant_thread": {
            "user_id": "U1", "context": {"channel_id": "C1", "team_id": "T0POLICY"}, "channel_id": "D1",
            "thread_ts": thread_ts}})
        calls = await fake_slack.wait_for("assistant.threads.setSuggestedPrompts", 2)
    tab, thread = sorted((c.args for c in calls), key=lambda a: "thread_ts" in a)
    assert tab["channel_id"] == "D1" and "thread_ts" not in tab  # agent messaging: no thread_ts
    assert thread == {**tab, "thread_ts": thread_ts}
    assert 1 <= len(tab["prompts"]) <= 4 and all({"title", "message"} <= set(p) for p in tab["prompts"])


# --------------------------------------------------------------------------------------------- feedback


@run_async
async def test_feedback_votes_change_and_the_thumbs_down_form(slack_bot, fake_slack, tmp_path):
    load_leave(slack_bot.runtime, tmp_path)
    mention = app_mention("How many vacation days do I get?", user="U1", channel="C1")
    async with serving(slack_bot) as slack:
        await slack.event(mention)
        [post] = await fake_slack.wait_for("chat.postMessage")
        answer_message = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "ts": "1767000001.000100",
                          "thread_ts": mention["ts"], "text": post.args["text"], "blocks": post.args["blocks"]}
        up, down = feedback_values(post.args["blocks"])

        reply = await slack.interaction(feedback_click(up, "U2", answer_message, "C1"))
        assert reply.status == 200
        [thanks] = await fake_slack.wait_for("chat.postEphemeral")
        [row] = interactions(slack_bot.runtime)
        assert votes(slack_bot.runtime) == [(row.id, "U2", "slack", 1, None, None)]
        assert thanks.args["user"] == "U2" and thanks.args["channel"] == "C1"
        assert thanks.args["thread_ts"] == mention["ts"] and "👍" in thanks.args["text"]

        click = feedback_click(down, "U2", answer_message, "C1")
        await slack.interaction(click)
        [form] = await fake_slack.wait_for("views.open")
        changed = (await fake_slack.wait_for("chat.postEphemeral", 2))[1]
        assert "Vote changed" in changed.args["text"]
        assert votes(slack_bot.runtime) == [(row.id, "U2", "slack", -1, None, None)]  # still one vote
        view = form.args["view"]
        assert form.args["trigger_id"] == click["trigger_id"] and view["callback_id"] == "policybot_feedback_modal"
        assert json.loads(view["private_metadata"])["interaction_id"] == row.id
        labels = [b["label"]["text"] for b in view["blocks"]]
        assert labels == ["What was wrong?", "What should the answer have said?"]

        submitted = await slack.interaction(view_submission(
            "policybot_feedback_modal", "U2", private_metadata=view["private_metadata"], values={
                "wrong": {"wrong": {"type": "plain_text_input", "value": "It ignores part-time staff."}},
                "correction": {"correction": {"type": "plain_text_input",
                                              "value": "Part-timers get a pro-rated share of 25 days."}}}))
        assert submitted.status == 200 and submitted.body == ""  # an empty 200 closes the modal
        await fake_slack.wait_for("chat.postEphemeral", 3)
    assert votes(slack_bot.runtime) == [(row.id, "U2", "slack", -1, "It ignores part-time staff.",
                                         "Part-timers get a pro-rated share of 25 days.")]


@run_async
async def test_feedback_on_an_unknown_answer_is_not_saved(slack_bot, fake_slack):
    answer_message = {"type": "message", "user": "UBOT", "ts": "1767000001.000100", "text": "x",
                      "blocks": [{"type": "context_actions", "block_id": "fb", "elements": []}]}
    async with serving(slack_bot) as slack:
        await slack.interaction(feedback_click("+1:11111111-2222-3333-4444-555555555555", "U2", answer_message, "D1"))
        [note] = await fake_slack.wait_for("chat.postEphemeral")
        await slack.interaction(feedback_click("+1:not a uuid", "U2", answer_message, "D1"))
    assert "couldn't find that answer" in note.args["text"] and votes(slack_bot.runtime) == []
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 1


# --------------------------------------------------------------------------------------------- Socket Mode


@run_async
async def test_socket_mode_when_an_app_token_is_set(runtime, fake_slack, tmp_path):
    """SLACK_APP_TOKEN: no HTTP route; the bot connects to Slack's WebSocket, acks envelopes and answers."""
    from aiohttp import WSMsgType, web

    from tests.fakes.slack_api import event_envelope

    load_leave(runtime, tmp_path)
    connected: asyncio.Queue = asyncio.Queue()
    acks: asyncio.Queue = asyncio.Queue()

    async def socket(request: web.Request) -> web.WebSocketResponse:  # Slack's side of Socket Mode
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0POLICY"},
                            "debug_info": {"host": "test", "approximate_connection_time": 3600}})
        await connected.put(ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await acks.put(json.loads(msg.data))
        return ws

    socket_app = web.Application()
    socket_app.router.add_get("/link", socket)
    async with TestServer(socket_app, host="127.0.0.1") as socket_server:
        fake_slack.socket_url = str(socket_server.make_url("/link")).replace("http://", "ws://")
        runtime.settings = slack_settings(runtime.settings, fake_slack, slack_signing_secret=None,
                                          slack_app_token="xapp-1-A0POLICY-test")
        async with TestClient(TestServer(build_app(PolicyBot(runtime), PLATFORMS), host="127.0.0.1")) as client:
            assert (await client.post("/slack/events", data=b"{}")).status == 404  # HTTP mode is off
            ws = await asyncio.wait_for(connected.get(), 10)
            mention, event_id = app_mention("How many vacation days do I get?"), new_event_id()
            for attempt, envelope_id in enumerate(("env-1", "env-2")):  # Slack retries over the socket too
                await ws.send_json({"envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
                                    "retry_attempt": attempt, "retry_reason": "timeout" if attempt else "",
                                    "payload": event_envelope(mention, event_id)})
                assert (await asyncio.wait_for(acks.get(), 5))["envelope_id"] == envelope_id
            [post] = await fake_slack.wait_for("chat.postMessage")
    [opened] = fake_slack.calls_to("apps.connections.open")
    assert opened.headers["Authorization"] == "Bearer xapp-1-A0POLICY-test"
    assert post.args["thread_ts"] == mention["ts"] and "25 days" in post.args["text"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 1 and len(interactions(runtime)) == 1
