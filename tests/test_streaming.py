"""Answers streamed as they are written: the core's deltas (real openai client reading the local server's SSE),
Slack chat streaming against the local Web API, Teams streaming activities against the local connector, the
answer-worker path and the terminal. Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
from sqlalchemy import text

from bot.core import PolicyBot
from bot.records import Interaction
from bot.streaming import DeltaFeed, relay, replaces
from knowledge.ingest import ingest_file
from tests.fakes.openai_server import Scripted
from tests.helpers import LEAVE, write

CITED = "Full-time employees get 25 days of paid vacation a year [1]. Part-timers get a pro-rated amount [1]."
UNCITED = "You get lots of vacation, trust me, more than anyone else in the whole industry gets."


def load_leave(runtime, tmp_path) -> None:
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))


def patient(bot: PolicyBot, **settings) -> PolicyBot:
    """The LLM bot with a client timeout that a busy test machine cannot trip (the fixture's is 1.5 s)."""
    from bot.core import llm_from_runtime

    bot.settings = bot.runtime.settings = bot.settings.model_copy(update={"llm_timeout_s": 15.0, **settings})
    bot.runtime.openai = bot.runtime.openai.with_options(timeout=15.0)
    bot.llm = llm_from_runtime(bot.runtime)
    return bot


def row(runtime, interaction_id) -> Interaction:
    with runtime.sessions() as session:
        return session.get(Interaction, interaction_id)


# ------------------------------------------------------------------------------------------------- core


def test_llm_answer_streams_its_deltas_and_returns_the_checked_text(llm_policybot, fake_openai, tmp_path):
    load_leave(llm_policybot.runtime, tmp_path)
    fake_openai.queue(Scripted(content=CITED, first_token_s=0.2, tokens_per_s=200))
    deltas: list[tuple[float, str]] = []
    started = time.monotonic()
    answer = llm_policybot.answer("How many vacation days do I get?", "U1", "slack", "C1:1",
                                  on_text=lambda d: deltas.append((time.monotonic() - started, d)))
    assert answer.kind == "llm" and answer.text == CITED and answer.sources
    assert len(deltas) == len(CITED.split()) and "".join(d for _, d in deltas).strip() == CITED
    assert deltas[0][0] < deltas[-1][0]  # they came one by one, not all at the end
    request = fake_openai.chat_requests()[-1]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    stored = row(llm_policybot.runtime, answer.interaction_id)
    assert stored.answer == CITED and stored.completion_tokens == len(CITED.split())  # usage from the stream

    # The same question again: from the cache, at once, no deltas.
    again: list[str] = []
    cached = llm_policybot.answer("How many vacation days do I get?", "U2", "slack", "C2:1", on_text=again.append)
    assert cached.cached and cached.text == CITED and again == []


def test_llm_stream_reads_the_reply_its_usage_and_an_error_midway(fake_openai):
    """bot.llm reads the SDK's stream as plain dicts (benchmarks/llm_stream.py): the text, model, usage and
    finish reason still come through, and an error event part way is an LLMError, not a short answer."""
    import openai

    from bot.llm import LLM, LLMError
    from tests.fakes.openai_server import Streamed

    llm = LLM(openai.OpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=0))
    seen: list[str] = []
    fake_openai.queue(Scripted(content=CITED))
    generation = llm.stream([{"role": "user", "content": "vacation?"}], "base-model", seen.append)
    assert generation.text == CITED and "".join(seen).strip() == CITED
    assert generation.finish_reason == "stop" and generation.model == "base-model"
    assert generation.completion_tokens == len(CITED.split()) and generation.prompt_tokens

    class BreaksOff(Streamed):
        def events(self):
            for n, (delay, event) in enumerate(super().events()):
                if n == 3:
                    yield 0.0, json.dumps({"error": {"message": "the model is overloaded", "type": "server_error"}})
                    return
                yield delay, event

    fake_openai.routes[("POST", "/chat/completions")] = lambda fake, http, raw: (200, BreaksOff(CITED, "base-model", 0.0, 0.0, True, 10))
    seen.clear()
    with pytest.raises(LLMError, match="overloaded"):
        llm.stream([{"role": "user", "content": "vacation?"}], "base-model", seen.append)
    assert 0 < len(seen) < len(CITED.split())  # it had started: the caller replaces what was shown


def test_uncited_streamed_answer_is_replaced_by_the_extractive_one_everywhere(llm_policybot, fake_openai,
                                                                              tmp_path):
    load_leave(llm_policybot.runtime, tmp_path)
    fake_openai.queue(Scripted(content=UNCITED))
    deltas: list[str] = []
    answer = llm_policybot.answer("How many vacation days do I get?", "U1", "slack", "C1:1", on_text=deltas.append)
    assert "".join(deltas).strip() == UNCITED  # what the user saw being written ...
    assert answer.kind == "fallback" and "25 days" in answer.text and "trust me" not in answer.text
    assert replaces("".join(deltas), answer.text)  # ... is replaced
    # The records and the cache see the final text only (a fallback is not cached at all).
    stored = row(llm_policybot.runtime, answer.interaction_id)
    assert stored.answer == answer.text
    # The streamed reply is checked like a complete one: the fallback names the model, the reason and its reply.
    assert (stored.fallback_model, stored.fallback_reason) == (llm_policybot.settings.chat_model, "no_citation")
    assert stored.fallback_reply == UNCITED
    assert not llm_policybot.answer("How many vacation days do I get?", "U1", "slack", "C1:2").cached


def test_extractive_and_small_talk_answers_send_no_deltas(policybot, runtime, tmp_path):
    load_leave(runtime, tmp_path)
    deltas: list[str] = []
    assert policybot.answer("How many vacation days do I get?", "U1", on_text=deltas.append).kind == "extractive"
    assert policybot.answer("hello", "U1", on_text=deltas.append).kind == "smalltalk"
    assert deltas == []


def test_relay_shows_the_first_text_at_once_then_at_most_once_per_interval():
    async def scenario():
        feed = DeltaFeed()
        calls: list[tuple[float, str, str]] = []
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def show(text: str, new: str) -> bool:
            calls.append((loop.time() - started, text, new))
            return True

        async def produce() -> str:
            for i in range(30):  # 30 words over ~0.9 s, from another thread as the core does
                await asyncio.to_thread(feed, f"w{i} ")
                await asyncio.sleep(0.03)
            return "done"

        shown = await relay(feed, asyncio.ensure_future(produce()), show, interval_s=0.3)
        return calls, shown, feed.text

    calls, shown, text = asyncio.run(scenario())
    assert calls[0][0] < 0.15 and calls[0][1].startswith("w0")  # the first word, not the first second
    assert 2 <= len(calls) <= 5  # buffered: not one call per word
    assert all(b[0] - a[0] >= 0.29 for a, b in zip(calls, calls[1:]))
    assert "".join(new for _, _, new in calls) == shown and text.startswith(shown)


def test_relay_sends_what_came_while_a_show_was_in_flight():
    """A slow update (Slack's appendStream under load) while the LLM keeps writing: the words that arrived
    meanwhile are in the next update's `new`, not skipped (every word once, in order)."""
    async def scenario():
        feed = DeltaFeed()
        calls: list[tuple[str, str]] = []

        async def show(text: str, new: str) -> bool:
            calls.append((text, new))
            if len(calls) == 1:  # the first call is still in flight when two more words come
                feed("b ")
                feed("c ")
                await asyncio.sleep(0.05)
            return True

        async def produce() -> str:
            feed("a ")
            await asyncio.sleep(0.3)
            feed("d ")
            await asyncio.sleep(0.3)
            return "done"

        shown = await relay(feed, asyncio.ensure_future(produce()), show, interval_s=0.1)
        return calls, shown, feed.text

    calls, shown, text = asyncio.run(scenario())
    assert "".join(new for _, new in calls) == calls[-1][0] == shown and text.startswith(shown)
    assert all(b.startswith(a) for (a, _), (b, _) in zip(calls, calls[1:]))


# ------------------------------------------------------------------------------------------------- Slack

from adapters import answer_worker  # noqa: E402
from adapters.platforms import PLATFORMS  # noqa: E402
from adapters.server import build_app  # noqa: E402
from adapters.slack.replier import QUESTION_TURN  # noqa: E402
from adapters.turn_queue import GROUP, STREAM, TurnQueue  # noqa: E402
from tests.fakes.slack_api import app_mention, message, new_ts  # noqa: E402
from tests.test_slack import SECRET, feedback_values, serving, slack_settings  # noqa: E402


@pytest.fixture
def streaming_bot(llm_policybot, fake_slack, fake_openai, tmp_path):
    """The LLM core wired to the local Slack API, streaming every 0.2 s; the LLM writes 20 words a second."""
    bot = patient(llm_policybot)
    bot.settings = bot.runtime.settings = slack_settings(bot.settings, fake_slack, stream_interval_s=0.2)
    load_leave(bot.runtime, tmp_path)
    fake_openai.first_token_s, fake_openai.tokens_per_s = 0.5, 20
    return bot


def methods(fake) -> list[str]:
    return [c.method for c in fake.calls if c.method.startswith(("chat.", "assistant."))]


async def ask(bot, fake, event, wait_for: str) -> None:
    async with serving(bot) as slack:
        assert (await slack.event(event)).status == 200
        await fake.wait_for(wait_for)


@pytest.mark.parametrize("where", ["channel", "dm"])
def test_slack_answer_streams_then_stops_with_sources_and_feedback(streaming_bot, fake_slack, fake_openai, where):
    fake_openai.queue(Scripted(content=CITED))
    event = (app_mention("How many vacation days do I get?", user="U1", channel="C1") if where == "channel"
             else message("How many vacation days do I get?", user="U1", channel="D1"))
    asyncio.run(ask(streaming_bot, fake_slack, event, "chat.stopStream"))

    calls = methods(fake_slack)
    # The thread status until the first text, then one stream: started, appended (buffered), stopped.
    assert calls[0] == "assistant.threads.setStatus" and calls[1] == "chat.startStream"
    appends = calls.count("chat.appendStream")
    assert 1 <= appends <= 6, calls  # ~0.85 s of writing at one call per 0.2 s, not one per word (17)
    assert calls[-1] == "chat.stopStream" and "chat.postMessage" not in calls and "chat.update" not in calls
    [start] = fake_slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == event["ts"] and start.args["recipient_user_id"] == "U1"
    assert start.args["recipient_team_id"] == "T0POLICY"
    [stop] = fake_slack.calls_to("chat.stopStream")
    [shown] = fake_slack.messages.values()
    assert shown["text"].strip() == CITED and not shown["streaming"]  # every word once, in order
    [stored] = [row(streaming_bot.runtime, i.id) for i in _interactions(streaming_bot.runtime)]
    assert feedback_values(stop.args["blocks"]) == (f"+1:{stored.id}", f"-1:{stored.id}")
    assert any("Leave Policy › Vacation" in e["text"] for b in stop.args["blocks"] if b["type"] == "context"
               for e in b["elements"])
    assert stored.kind == "llm" and stored.message_ref == f"{event['channel']}:{start_ts(fake_slack)}"


def test_slack_slow_appends_lose_no_words(streaming_bot, fake_slack, fake_openai):
    # Each append takes longer than the LLM takes for a word (a loaded machine): words come while it is in flight.
    fake_openai.queue(Scripted(content=CITED))
    fake_slack.slow("chat.appendStream", 0.15)
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.stopStream"))
    assert fake_slack.calls_to("chat.appendStream") and "chat.update" not in methods(fake_slack)
    [shown] = fake_slack.messages.values()
    assert shown["text"].strip() == CITED and not shown["streaming"]  # every word once, in order


def start_ts(fake) -> str:
    return next(iter(fake.messages))


def _interactions(runtime) -> list[Interaction]:
    with runtime.sessions() as session:
        return list(session.query(Interaction).order_by(Interaction.created_at))


def test_slack_citation_failure_replaces_the_streamed_text(streaming_bot, fake_slack, fake_openai):
    fake_openai.queue(Scripted(content=UNCITED))
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.update"))
    [shown] = fake_slack.messages.values()
    assert shown["streamed"] and shown["updated"]  # the streamed message itself was rewritten ...
    assert "25 days" in shown["text"] and "trust me" not in shown["text"]  # ... with the extractive answer
    assert feedback_values(shown["blocks"])
    calls = methods(fake_slack)
    assert calls.index("chat.stopStream") < calls.index("chat.update") and "chat.postMessage" not in calls
    [stored] = _interactions(streaming_bot.runtime)
    assert stored.kind == "fallback" and stored.answer == _plain(stored.answer)


def _plain(text: str) -> str:
    assert "trust me" not in text
    return text


@pytest.mark.parametrize("error,status", [("message_not_in_streaming_state", 200), ("ratelimited", 429)])
def test_slack_stream_refused_midway_is_finished_with_chat_update(streaming_bot, fake_slack, fake_openai, error,
                                                                  status):
    fake_openai.queue(Scripted(content=CITED))
    # A 429 is not waited out (Retry-After 30 s would outlast the wait below): the message is rewritten instead.
    fake_slack.fail("chat.appendStream", error, times=5, status=status, retry_after=30 if status == 429 else None)
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.update"))
    calls = methods(fake_slack)
    assert calls.count("chat.appendStream") == 1  # no more appends once one was refused
    assert "chat.postMessage" not in calls
    [shown] = fake_slack.messages.values()
    assert "25 days" in shown["text"] and shown["text"].count("25 days") == 1 and feedback_values(shown["blocks"])
    [stored] = _interactions(streaming_bot.runtime)
    assert stored.message_ref.endswith(start_ts(fake_slack))


@pytest.mark.parametrize("error,status", [("unknown_method", 200), ("ratelimited", 429)])
def test_slack_without_streaming_posts_the_answer_once(streaming_bot, fake_slack, fake_openai, error, status):
    fake_openai.queue(Scripted(content=CITED))
    # An old workspace, or too many streams at once (not waited out: the answer is posted when ready).
    fake_slack.fail("chat.startStream", error, status=status, retry_after=30 if status == 429 else None)
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.postMessage"))
    calls = methods(fake_slack)
    assert calls.count("chat.startStream") == 1 and "chat.appendStream" not in calls
    [post] = fake_slack.calls_to("chat.postMessage")
    assert CITED.split("[1]")[0].strip() in post.args["text"] and feedback_values(post.args["blocks"])
    assert [m["streamed"] for m in fake_slack.messages.values()] == [False]


def test_slack_stop_refused_is_finished_with_chat_update(streaming_bot, fake_slack, fake_openai):
    fake_openai.queue(Scripted(content=CITED))
    fake_slack.fail("chat.stopStream", "message_not_in_streaming_state")  # the stream expired meanwhile
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.update"))
    [shown] = fake_slack.messages.values()
    assert shown["updated"] and shown["text"].count("25 days") == 1 and feedback_values(shown["blocks"])
    assert not fake_slack.calls_to("chat.postMessage")


def test_slack_quick_answers_are_posted_not_streamed(streaming_bot, fake_slack, fake_openai):
    fake_openai.queue(Scripted(content=CITED))
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?"), "chat.stopStream"))
    # The same question again is a cache hit: posted whole, at once.
    asyncio.run(ask(streaming_bot, fake_slack, app_mention("How many vacation days do I get?", channel="C2"),
                    "chat.postMessage"))
    assert len(fake_slack.calls_to("chat.startStream")) == 1
    assert fake_slack.calls_to("chat.postMessage")[0].args["channel"] == "C2"


def test_slack_queued_question_is_streamed_by_an_answer_worker(streaming_bot, fake_slack, fake_openai, settings,
                                                               redis_client):
    fake_openai.queue(Scripted(content=CITED))
    turn = dict(event_id="EvStream", question="How many vacation days do I get?", user="U3", channel="C3",
                thread_ts=new_ts(), team="T0POLICY")

    async def scenario() -> None:
        queue = TurnQueue.from_url(settings.redis_url)
        try:
            await queue.put(QUESTION_TURN, turn)
            await queue.put(QUESTION_TURN, turn)  # a retry of the same event
            stop = asyncio.Event()
            worker = asyncio.create_task(answer_worker.work(streaming_bot, stop))
            await fake_slack.wait_for("chat.stopStream")
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.wait_for(worker, 30)
        finally:
            await queue.close()

    asyncio.run(scenario())
    [start] = fake_slack.calls_to("chat.startStream")
    assert start.args["recipient_team_id"] == "T0POLICY" and start.args["channel"] == "C3"
    [shown] = fake_slack.messages.values()
    assert shown["text"].strip() == CITED and not fake_slack.calls_to("chat.postMessage")
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0 and len(_interactions(streaming_bot.runtime)) == 1


# ------------------------------------------------------------------------------------------------- Teams

from tests.test_teams import CHANNEL, RunningApp, feedback_invoke  # noqa: E402
from tests.test_teams import message as teams_message  # noqa: E402


@pytest.fixture
def teams_llm(llm_policybot, fake_openai, connector, tmp_path):
    """The LLM core behind the Teams endpoint; the LLM's first word after 0.5 s, then 8 words a second."""
    bot = patient(llm_policybot)
    load_leave(bot.runtime, tmp_path)
    fake_openai.first_token_s, fake_openai.tokens_per_s = 0.5, 8
    server = RunningApp(build_app(bot, PLATFORMS)).start()
    yield server
    server.stop()


def teams_ask(server, connector, question: str, **kwargs):
    activity = teams_message(connector, question, **kwargs)
    status, _ = server.post(activity)
    assert status == 202
    connector.wait_for_messages(1)
    server.wait_idle()
    return activity


def test_teams_personal_chat_streams_then_sends_the_final_cited_message(teams_llm, connector, fake_openai,
                                                                       llm_policybot):
    fake_openai.queue(Scripted(content=CITED))
    teams_ask(teams_llm, connector, "How many vacation days do I get?")
    sent = connector.sent
    informative, *updates, final = sent
    assert informative.type == "typing" and informative.text == "Searching the handbook…"
    assert informative.stream == {"type": "streaminfo", "streamType": "informative", "streamSequence": 1}
    stream_id = informative.activity_id
    assert len(updates) >= 2 and all(u.type == "typing" for u in updates)
    assert [u.stream for u in updates] == [{"type": "streaminfo", "streamType": "streaming", "streamId": stream_id,
                                            "streamSequence": n} for n in range(2, len(updates) + 2)]
    texts = [u.text for u in updates]
    assert all(b.startswith(a.strip()) and len(b) > len(a) for a, b in zip(texts, texts[1:]))  # the text so far
    assert all(b.at - a.at >= 0.95 for a, b in zip(updates, updates[1:]))  # at most one a second
    assert final.type == "message" and final.text == CITED
    entities = {e["type"]: e for e in final.activity["entities"]}
    assert entities["streaminfo"] == {"type": "streaminfo", "streamType": "final", "streamId": stream_id}
    assert entities["https://schema.org/Message"]["citation"][0]["position"] == 1
    assert final.activity["channelData"] == {"feedbackLoop": {"type": "default"}}
    # The streamed message is the answer: a vote on it is recorded against the interaction.
    assert teams_llm.post(feedback_invoke(connector, stream_id, "like"))[0] == 200
    with llm_policybot.runtime.sessions() as session:
        [interaction] = session.query(Interaction).all()
        assert interaction.kind == "llm" and interaction.message_ref.endswith(stream_id)
        votes = session.execute(text("SELECT interaction_id, rating FROM feedback")).all()
    assert [tuple(v) for v in votes] == [(interaction.id, 1)]


def test_teams_channel_gets_the_final_message_only(teams_llm, connector, fake_openai):
    fake_openai.queue(Scripted(content=CITED, tokens_per_s=50))
    teams_ask(teams_llm, connector, "How many vacation days do I get?", conversation=CHANNEL, kind="channel",
              mention=True)
    assert all(s.stream is None for s in connector.sent)
    [final] = connector.messages()
    assert final.text == CITED and {e["type"] for e in final.activity["entities"]} == {"https://schema.org/Message"}


def test_teams_refused_stream_update_falls_back_to_the_final_message(teams_llm, connector, fake_openai):
    fake_openai.queue(Scripted(content=CITED))
    connector.fail_stream(429, times=1)
    teams_ask(teams_llm, connector, "How many vacation days do I get?")
    assert len(connector.refused) == 1
    assert [s.stream["streamType"] for s in connector.sent] == ["informative", "final"]  # no updates after a 429
    [final] = connector.messages()
    assert final.text == CITED


def test_teams_refused_final_stream_message_is_sent_as_a_message(teams_llm, connector, fake_openai):
    fake_openai.queue(Scripted(content=CITED))
    connector.fail_stream(403, times=1, stream_type="final")
    teams_ask(teams_llm, connector, "How many vacation days do I get?")
    [final] = connector.messages()
    assert final.text == CITED and final.stream is None and len(connector.refused) == 1


def test_teams_stream_past_its_time_limit_ends_with_a_plain_final_message(teams_llm, connector, fake_openai,
                                                                          monkeypatch):
    monkeypatch.setattr("adapters.teams.stream.STREAM_LIMIT_S", 1.2)  # Teams' 2 minutes, scaled down
    fake_openai.queue(Scripted(content=CITED))  # about 2.5 s of writing
    teams_ask(teams_llm, connector, "How many vacation days do I get?")
    informative, *updates, final = connector.sent
    assert updates and all(u.at - informative.at <= 1.2 + 0.3 for u in updates)  # none once the limit passed
    assert final.type == "message" and final.stream is None and final.text == CITED  # the answer still comes


def test_teams_citation_failure_replaces_the_streamed_text(teams_llm, connector, fake_openai):
    fake_openai.queue(Scripted(content=UNCITED))
    teams_ask(teams_llm, connector, "How many vacation days do I get?")
    updates = [s for s in connector.sent if s.stream and s.stream["streamType"] == "streaming"]
    assert updates and "trust me" in updates[-1].text
    [final] = connector.messages()
    assert final.stream["streamType"] == "final" and "25 days" in final.text and "trust me" not in final.text


# ------------------------------------------------------------------------------------------------- terminal

from adapters import terminal  # noqa: E402


class Recorder(io.StringIO):
    """The terminal: what was written, piece by piece."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []

    def write(self, text: str) -> int:
        self.pieces.append(text)
        return super().write(text)


@pytest.mark.parametrize("reply", [CITED, UNCITED])
def test_terminal_prints_the_answer_as_it_streams(llm_policybot, fake_openai, tmp_path, reply):
    load_leave(llm_policybot.runtime, tmp_path)
    fake_openai.queue(Scripted(content=reply, tokens_per_s=200))
    out = Recorder()
    inputs = iter(["How many vacation days do I get?", "quit"])
    assert terminal.chat(llm_policybot, read=lambda prompt: next(inputs), out=out) == 0
    words = [p for p in out.pieces if p.strip() and p.strip() in reply.split()]
    assert len(words) >= len(reply.split()) - 1  # written word by word
    shown = out.getvalue()
    assert "Sources:" in shown and "[1] Leave Policy › Vacation" in shown
    if reply == CITED:
        assert shown.count("25 days") == 1  # not printed again after streaming
    else:  # the replacement follows, with a note
        assert "here is what they say" in shown and "25 days" in shown.split("here is what they say")[1]


def test_unsent_part_of_the_final_text():
    from bot.streaming import unsent

    assert unsent("You get ", "You get 25 days [1].") == "25 days [1]."
    assert unsent("You get", "You get 25 days [1].") == " 25 days [1]."
    assert unsent("  You get 25 days [1].", "You get 25 days [1].") == ""
    assert not replaces("You get ", "You get 25 days [1].") and replaces("See [3]", "See [1]")


# -------------------------------------------------------------------------- Ask HR under a streamed answer (#16)


def test_slack_streamed_answer_ends_with_ask_hr_when_hr_is_configured(streaming_bot, fake_slack, fake_openai):
    from adapters.slack import render

    streaming_bot.settings = streaming_bot.runtime.settings = streaming_bot.settings.model_copy(
        update={"hr_channel": "CHR"})
    fake_openai.queue(Scripted(content=CITED))
    asyncio.run(ask(streaming_bot, fake_slack, message("How many vacation days do I get?", user="U1", channel="D1"),
                    "chat.stopStream"))
    [stop] = fake_slack.calls_to("chat.stopStream")
    actions = [e["action_id"] for b in stop.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert render.ESCALATE_ACTION in actions and render.ESCALATE_ANONYMOUS_ACTION in actions
    assert "chat.postMessage" not in methods(fake_slack)  # the buttons came with the stream, not a second post


def test_teams_streamed_final_message_carries_the_ask_hr_card(llm_policybot, fake_openai, connector, tmp_path):
    runtime = patient(llm_policybot, hr_channel="19:hr@thread.tacv2").runtime
    bot = PolicyBot(runtime)  # built with the HR channel set, as `serve` builds it
    load_leave(bot.runtime, tmp_path)
    fake_openai.first_token_s, fake_openai.tokens_per_s = 0.5, 8
    server = RunningApp(build_app(bot, PLATFORMS)).start()
    try:
        fake_openai.queue(Scripted(content=CITED))
        teams_ask(server, connector, "How many vacation days do I get?")
    finally:
        server.stop()
    *_, final = connector.sent
    assert final.type == "message" and final.text == CITED
    assert any(e["type"] == "streaminfo" and e["streamType"] == "final" for e in final.activity["entities"])
    cards = [a for a in final.activity.get("attachments") or [] if a["contentType"] == "application/vnd.microsoft.card.adaptive"]
    assert cards and "Ask HR" in str(cards[0]["content"])
