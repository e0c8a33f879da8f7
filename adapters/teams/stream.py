"""One answer streamed into a Teams personal chat (adapters.teams.render has the activities' shapes).

    not ready at once ─► informative typing activity ("Searching the handbook…"); its id is the streamId
    the text so far   ─► typing activities, streamType streaming, streamSequence 2, 3, …, ≥ 1 s apart
    answer done       ─► the answer message as always (AI label, citations, feedback loop), streamType final

Teams allows a stream two minutes and about one activity a second. A refused streaming activity (429, or 403
once the stream is no longer allowed) ends the updates; the final message still comes. A final message Teams
refuses as a stream's end is sent again as an ordinary message, so the answer is never lost; the user sees
exactly one answer either way (Teams drops the unfinished stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import ResourceResponse

from adapters import background
from adapters.teams import render
from bot import metrics
from bot.contract import Answer
from bot.streaming import DeltaFeed, relay

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0  # Teams: streaming activities at most about once a second
STREAM_LIMIT_S = 110.0  # Teams ends a stream after 2 minutes; stop updating with time left for the final
STATUS = background.SEARCHING_STATUS  # the informative update
PLATFORM = "teams"


async def streamed_answer(turn_context: TurnContext, core, run, question: str, user_id: str, started: float,
                          ask_hr: Callable[[Answer], Any] = lambda answer: None
                          ) -> tuple[Answer, ResourceResponse | None]:
    """Answer in a personal chat: at once when the answer is ready within background.INDICATOR_DELAY_S, else the
    informative update, the text as it is written and the final message. (answer, the final message's response).
    `core` is the PolicyBot, `run` the server's way of running a core call off the event loop; `ask_hr` gives the
    answer's "Ask HR" card (or None)."""
    feed = DeltaFeed()
    work = asyncio.ensure_future(run(core.answer, question, user_id, PLATFORM, turn_context.activity.conversation.id,
                                     on_text=feed, private=True))  # a personal chat: the asker's own audiences
    if await background.ready_within(work, background.INDICATOR_DELAY_S):
        answer: Answer = work.result()
        response = await turn_context.send_activity(render.answer_activity(answer, ask_hr=ask_hr(answer)))
        metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=False)
        return answer, response
    stream = TeamsStream(turn_context)
    await stream.inform(STATUS)

    async def show(text: str, new: str) -> bool:
        first = not stream.streamed
        shown = await stream.show(text, new)
        if first and stream.streamed:
            metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=True)
        return shown

    interval = getattr(core.settings, "stream_interval_s", MIN_INTERVAL_S)
    await relay(feed, work, show, max(MIN_INTERVAL_S, interval))
    answer = await work
    response = await stream.finish(answer, ask_hr(answer))
    if not stream.streamed:
        metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=False)
    if (response is None or not response.id) and stream.stream_id:
        response = ResourceResponse(id=stream.stream_id)  # the streamed message is the answer's message
    return answer, response


class TeamsStream:
    """The stream of one answer; `show` is bot.streaming.relay's callback, `finish` sends the final message."""

    def __init__(self, turn_context: TurnContext) -> None:
        self.turn_context = turn_context
        self.stream_id: str | None = None
        self.sequence = 0
        self.started: float | None = None  # time.monotonic() of the first activity
        self.broken = False
        self.streamed = False  # some answer text was shown

    async def inform(self, text: str) -> bool:
        """The informative update that opens the stream."""
        return await self._send(render.informative_activity(text, self.sequence + 1))

    async def show(self, text: str, new: str) -> bool:
        if self.broken or (self.started is not None and time.monotonic() - self.started > STREAM_LIMIT_S):
            return False
        sent = await self._send(render.streaming_activity(text, self.stream_id, self.sequence + 1))
        self.streamed = self.streamed or sent
        return sent

    async def _send(self, activity) -> bool:
        try:
            response = await self.turn_context.send_activity(activity)
        except Exception as err:  # the connector's errors (429, 403 stream not allowed) are all "stop streaming"
            self.broken = True
            log.warning("Teams stream update refused (%s); the answer comes as the final message", _status(err))
            return False
        self.sequence += 1
        if self.started is None:
            self.started = time.monotonic()
        if self.stream_id is None and response is not None and response.id:
            self.stream_id = response.id  # Teams: the first streaming response's id names the stream
        return True

    async def finish(self, answer: Answer, ask_hr: Any = None):
        """The final message (with `ask_hr`, the "Ask HR" card); the connector's ResourceResponse (its id is the
        message's)."""
        expired = self.started is not None and time.monotonic() - self.started > STREAM_LIMIT_S
        stream_id = None if expired else self.stream_id
        try:
            return await self.turn_context.send_activity(render.final_activity(answer, stream_id, ask_hr))
        except Exception as err:
            if stream_id is None:
                raise
            log.warning("Teams refused the stream's final message (%s); sending it as a message", _status(err))
            return await self.turn_context.send_activity(render.final_activity(answer, None, ask_hr))


def _status(err: Exception) -> str:
    response = getattr(err, "response", None)
    code = getattr(response, "status_code", None)
    return f"HTTP {code}" if code else f"{type(err).__name__}: {err}"
