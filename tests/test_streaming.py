"""Answers streamed as they are written: the core's deltas (real openai client reading the local server's SSE),
Slack chat streaming against the local Web API, Teams streaming activities against the local connector, the
answer-worker path and the terminal. Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

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
    assert row(llm_policybot.runtime, answer.interaction_id).answer == answer.text
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
