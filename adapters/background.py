"""Acknowledge now, answer later: the plumbing Slack and Teams share.

Slack wants its HTTP 200 within 3 s and the Bot Framework its response within ~15 s, while an answer can take
longer. So a platform acknowledges at once and the answer runs after: on an answer worker when there is a turn
queue (`serve --answer-workers M`), else in a background task of this process. `Background` keeps those tasks
(so a question that was acknowledged is also answered: `drain()` waits for them at shutdown) and makes the
hand-off decision; a full queue gets the busy reply instead. `ready_within` is the delay before a "Searching…"
status or typing indicator: an answer ready sooner needs none, which saves a platform call per question.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from adapters.turn_queue import Put, TurnQueue

log = logging.getLogger(__name__)

# An answer ready sooner than this (a cache hit, most extractive answers) goes out without a status or typing
# indicator first. Read at call time, so tests can change it.
INDICATOR_DELAY_S = 0.4
DRAIN_TIMEOUT_S = 25.0  # below `policybot serve`'s 30 s shutdown timeout
# What a platform shows while an answer not ready within INDICATOR_DELAY_S is being looked up (Slack's thread
# status, Teams' informative stream update).
SEARCHING_STATUS = "Searching the handbook…"
BUSY_MESSAGE = ("I'm getting a lot of questions right now and couldn't look into this one. "
                "Please ask me again in a minute.")


class Background:
    """One platform's work after the ack: its tasks, their drain, and the turn-queue hand-off."""

    def __init__(self, platform: str, queue: TurnQueue | None = None) -> None:
        self.platform = platform
        self.queue = queue  # set when answer workers answer the questions (adapters.turn_queue)
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable, name: str) -> asyncio.Task:
        """Run work after the ack; the task is kept until it finishes and awaited by drain()."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.platform}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self.platform, task.get_name(), exc_info=task.exception())

    async def hand_off(self, kind: str, turn: dict, answer: Callable[[], Awaitable],
                       busy: Callable[[], Awaitable]) -> Put:
        """Queue the turn for an answer worker; when there is no queue (or Redis can't take it) answer here, and
        when the queue is full run the busy reply. Factories, so nothing is created for a queued turn."""
        put = await self.queue.put(kind, turn) if self.queue is not None else Put.UNAVAILABLE
        if put is Put.FULL:
            self.spawn(busy(), "busy")
        elif put is not Put.QUEUED:
            self.spawn(answer(), "answer")
        return put

    async def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Wait for the background work (answers being posted, uploads) to finish; cancel what overstays."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.tasks:
            left = deadline - loop.time()
            if left <= 0:
                for task in list(self.tasks):
                    log.warning("cancelling unfinished %s task %s at shutdown", self.platform, task.get_name())
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
                break
            await asyncio.wait(set(self.tasks), timeout=left)


async def ready_within(work: asyncio.Future, delay_s: float) -> bool:
    """Whether `work` finished within `delay_s` (no indicator needed then); 0 means show one at once."""
    if delay_s <= 0:
        return work.done()
    finished, _ = await asyncio.wait({work}, timeout=delay_s)
    return bool(finished)
