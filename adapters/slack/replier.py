"""What replies in Slack: posts answers (thread status, plain-text and DM fallbacks), the busy reply, and private
notes. Used by the listeners (adapters.slack.app) and, alone, by the answer workers, which answer queued questions
without a bolt app (adapters.answer_worker).

Exactly once: Slack resends an event it thinks was not acknowledged (X-Slack-Retry-Num), so every question is
claimed by its event_id (PolicyBot.events) before it is answered; the claim is shared by all bot processes, so a
retry that lands on another process is dropped as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters import background
from adapters.background import BUSY_MESSAGE
from adapters.message_log import log_question
from adapters.slack import render
from adapters.slack.stream import SlackStream
from bot import metrics
from bot.core import PolicyBot
from bot.streaming import DeltaFeed, relay

log = logging.getLogger(__name__)

PLATFORM = "slack"
STATUS = background.SEARCHING_STATUS  # shown only for answers not ready within background.INDICATOR_DELAY_S
RATE_LIMIT_RETRIES = 3
# Errors after which the answer goes to the asker's DM instead of the thread it was asked in.
UNREACHABLE_CHANNEL = frozenset({"channel_not_found", "not_in_channel", "is_archived", "restricted_action",
                                 "thread_not_found", "message_not_found"})
BAD_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format", "invalid_attachments"})

RunBlocking = Callable[..., Awaitable]
QUESTION_TURN = "slack_question"  # the kind of queued turn an answer worker runs with SlackReplier.answer

def make_client(settings, wait_out_rate_limits: bool = True) -> AsyncWebClient:
    """The Web API client: bot token, SLACK_API_URL as base URL, and the SDK's retry handlers
    (connection errors, and HTTP 429 `ratelimited`, which waits for Retry-After, unless told not to: streams)."""
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    handlers = [AsyncConnectionErrorRetryHandler()]
    if wait_out_rate_limits:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return AsyncWebClient(token=settings.slack_bot_token, base_url=base_url, timeout=30, retry_handlers=handlers)


class SlackReplier:
    """Answers and notes through the Web API client; the synchronous core runs on `run_blocking`."""

    def __init__(self, bot: PolicyBot, run_blocking: RunBlocking) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.run_blocking = run_blocking
        self.client = make_client(self.settings)
        self._stream_client: AsyncWebClient | None = None

    @property
    def stream_client(self) -> AsyncWebClient:
        """The client for stream calls: no waiting out rate limits; the same pooled session as `client`."""
        if self._stream_client is None or self._stream_client.session is not self.client.session:
            self._stream_client = make_client(self.settings, wait_out_rate_limits=False)
            self._stream_client.session = self.client.session
        return self._stream_client

    async def say_busy(self, event_id: str | None, question: str, user: str, channel: str, thread_ts: str,
                       only_if_engaged: bool = False, team: str | None = None, private: bool = False) -> None:
        """The answer workers have more questions waiting than they can take: say so now rather than let
        everyone's wait grow. Not a recorded turn (nothing to rate)."""
        if await self._take(event_id, channel, thread_ts, only_if_engaged):
            busy = render.Message(None, render.escape(BUSY_MESSAGE))  # plain text, no blocks
            await self.post(channel, thread_ts, busy, user)

    async def _take(self, event_id: str | None, channel: str, thread_ts: str, only_if_engaged: bool) -> bool:
        """Whether this process replies to the question: it is for the bot, and no one has taken it yet."""
        events = self.bot.events
        if only_if_engaged and not await events.answered_in_thread(PLATFORM, channel, thread_ts):
            return False
        if event_id and not await events.claim_event(PLATFORM, event_id):
            log.info("Slack event %s was already handled; not answering it again", event_id)
            return False
        return True

    async def answer(self, event_id: str | None, question: str, user: str, channel: str, thread_ts: str,
                     only_if_engaged: bool = False, team: str | None = None, private: bool = False) -> None:
        """Answer a question in its thread (a status first if it takes a while; an LLM answer streamed as it is
        written, adapters.slack.stream); the keyword arguments are a queued turn's (QUESTION_TURN). `team`: the
        asker's workspace, which a stream into a channel thread names (recipient_team_id); `private`: a DM, where
        the asker's own audiences are read (bot.audiences)."""
        if not await self._take(event_id, channel, thread_ts, only_if_engaged):
            return
        started = time.monotonic()
        log_question(self.settings, PLATFORM, user, question)
        feed = DeltaFeed() if self.settings.stream_answers else None
        work = asyncio.ensure_future(
            self.run_blocking(self.bot.answer, question, user, PLATFORM, f"{channel}:{thread_ts}", on_text=feed,
                              private=private))
        quick = await background.ready_within(work, background.INDICATOR_DELAY_S)
        status_shown = not quick and await self.set_status(channel, thread_ts, STATUS)
        stream = None
        if feed is not None and not work.done():
            stream = SlackStream(self.client, self.stream_client, channel, thread_ts, user, team)

            async def show(text: str, new: str) -> bool:
                first = stream.ts is None
                shown = await stream.show(text, new)
                if first and stream.ts is not None:
                    metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=True)
                return shown

            await relay(feed, work, show, self.settings.stream_interval_s)
        answer = await work
        ask_hr = bool(self.settings.hr_channel)
        message = render.render_answer(answer, ask_hr=ask_hr)
        posted = await stream.finish(answer, message, ask_hr=ask_hr) if stream is not None else None
        if posted is None:
            posted = await self.post(channel, thread_ts, message, user)
            if posted is not None and (stream is None or stream.ts is None):
                metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=False)
        if posted is None:
            if status_shown:
                await self.set_status(channel, thread_ts, "")
            return
        where, ts = posted
        try:
            await self.run_blocking(self.bot.remember_message, answer.interaction_id, f"{where}:{ts}")
        except Exception:  # the answer is out; only the message ↔ interaction link is missing
            log.exception("could not remember the Slack message of interaction %s", answer.interaction_id)
        if where == channel:
            await self.bot.events.mark_thread_answered(PLATFORM, channel, thread_ts)

    async def set_status(self, channel: str, thread_ts: str, status: str) -> bool:
        """The thread's "is typing" style status, where Slack offers it (agent threads); quietly skipped elsewhere."""
        try:
            await self.client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=status)
            return True
        except SlackApiError as err:
            log.debug("no thread status in %s: %s", channel, slack_error(err))
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.debug("no thread status in %s: %s", channel, err)
        return False

    async def post(self, channel: str, thread_ts: str | None, message: render.Message,
                   user: str | None = None) -> tuple[str, str] | None:
        """Post an answer; (channel, ts) of the message, or None. Rate limits are retried by the client's
        retry handler; a channel the bot can't write to gets the answer in the asker's DM instead."""
        try:
            response = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=message.text,
                                                          blocks=message.blocks, unfurl_links=False,
                                                          unfurl_media=False)
            return response["channel"], response["ts"]
        except SlackApiError as err:
            error = slack_error(err)
            if error in BAD_BLOCKS:
                log.warning("Slack rejected the answer's blocks (%s); posting it as plain text", error)
                return await self._post_plain(channel, thread_ts, message.text)
            if error in UNREACHABLE_CHANNEL and user and channel != user:
                log.warning("cannot answer in %s (%s); sending the answer to %s's DM", channel, error, user)
                note = render.Message(message.blocks, f"I couldn't reply where you asked, so here is my answer:\n"
                                                      f"{message.text}")
                return await self.post(user, None, note, None)
            log.error("could not post an answer in %s: %s", channel, error)
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.error("could not post an answer in %s: %s", channel, err)
        return None

    async def _post_plain(self, channel: str, thread_ts: str | None, text: str) -> tuple[str, str] | None:
        try:
            response = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
            return response["channel"], response["ts"]
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.error("could not post a plain answer in %s: %s", channel, err)
            return None

    async def tell(self, user: str, channel: str | None, thread_ts: str | None, text: str) -> None:
        """A message only `user` sees: ephemeral where they are, else their DM with the bot."""
        if channel:
            try:
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
                return
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
                log.info("ephemeral reply in %s failed (%s); using the DM", channel, err)
        await self.dm(user, text)

    async def dm(self, user: str, text: str) -> None:
        try:
            await self.client.chat_postMessage(channel=user, text=text)
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.error("could not send a DM to %s: %s", user, err)


def slack_error(err: SlackApiError) -> str:
    """Slack's error code (`ratelimited`, `channel_not_found`), or the HTTP status when the body wasn't Slack's."""
    data = getattr(err.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(err.response, 'status_code', '?')}"

