"""One answer streamed into a Slack thread: chat.startStream / appendStream / stopStream through slack_sdk's
`chat_stream()` helper, and the fallbacks that keep the answer from being lost or posted twice.

    first text   ─► chat.startStream (the helper; recipient_user_id / recipient_team_id for channel threads)
    every ~1 s   ─► chat.appendStream with what is new (bot.streaming.relay paces the calls)
    answer done  ─► chat.stopStream with the rest of the text, the sources and the 👍/👎 blocks

- startStream refused (an old workspace or plan, a channel that does not stream, `ratelimited`): nothing was
  posted, so the finished answer is posted with chat.postMessage as if streaming were off.
- appendStream or stopStream refused (`message_not_in_streaming_state`: the stream expired; `ratelimited`), or the
  final text is not the streamed text continued (the citation check replaced it with the extractive answer,
  markers were renumbered): the stream is stopped if it still can be, and the message it made is rewritten
  whole with chat.update. Only if that fails too is the answer posted as a new message.
Stream calls go through a client without the rate-limit retry handler: waiting out a Retry-After to show a few
more words is worse than showing the whole answer a moment later.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from bot.contract import Answer
from bot.streaming import replaces, unsent

log = logging.getLogger(__name__)

_FAILURES = (SlackApiError, SlackRequestError, aiohttp.ClientError, asyncio.TimeoutError)


class SlackStream:
    """The streamed message of one answer. `show` is bot.streaming.relay's callback; `finish` ends it."""

    def __init__(self, client: AsyncWebClient, stream_client: AsyncWebClient, channel: str, thread_ts: str,
                 user: str | None, team: str | None) -> None:
        self.client = client  # the replier's, with the retry handlers: chat.update must get through
        self.stream_client = stream_client
        self.channel = channel
        self.thread_ts = thread_ts
        self.user = user
        self.team = team
        self.streamer: AsyncChatStream | None = None
        self.broken = False  # a stream call failed: no more appends; the message is rewritten at the end
        self.sent = ""  # the raw answer text appended so far

    @property
    def ts(self) -> str | None:
        """The streamed message's ts once chat.startStream succeeded."""
        return self.streamer.ts if self.streamer is not None else None

    async def show(self, text: str, new: str) -> bool:
        if self.broken:
            return False
        try:
            if self.streamer is None:
                # buffer_size=1: every append is sent; relay already buffers by time.
                self.streamer = await self.stream_client.chat_stream(
                    channel=self.channel, thread_ts=self.thread_ts, buffer_size=1,
                    recipient_user_id=self.user, recipient_team_id=self.team)
            await self.streamer.append(markdown_text=render.stream_text(new))
            self.sent = text
            return True
        except _FAILURES as err:
            self.broken = True
            log.warning("Slack stream in %s stopped (%s); the answer is posted whole when ready", self.channel,
                        _error(err))
            return False

    async def finish(self, answer: Answer, message: render.Message, ask_hr: bool = False) -> tuple[str, str] | None:
        """End the stream with the final answer; (channel, ts) of the message that holds it, or None when the
        answer is not in Slack yet (no stream was started, or its message could not be rewritten): then the
        caller posts it."""
        if self.ts is None:
            return None
        if not self.broken and not replaces(self.sent, answer.text):
            tail = unsent(self.sent, answer.text)
            try:
                await self.streamer.stop(markdown_text=render.stream_text(tail) or None,
                                         blocks=render.stream_end_blocks(answer, ask_hr) or None)
                return self.channel, self.ts
            except _FAILURES as err:
                log.warning("chat.stopStream failed in %s (%s); rewriting the message", self.channel, _error(err))
        else:
            try:  # end the streaming state (best effort), then rewrite the text
                await self.streamer.stop()
            except _FAILURES as err:
                log.info("could not stop the stream in %s (%s); rewriting the message", self.channel, _error(err))
        try:
            await self.client.chat_update(channel=self.channel, ts=self.ts, text=message.text, blocks=message.blocks)
            return self.channel, self.ts
        except _FAILURES as err:
            log.error("could not rewrite the streamed answer in %s (%s); posting it again", self.channel,
                      _error(err))
            return None


def _error(err: Exception) -> str:
    if isinstance(err, SlackApiError):
        data = getattr(err.response, "data", None)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    return f"{type(err).__name__}: {err}"
