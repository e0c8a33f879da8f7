"""Answers shown while they are written: what Slack, Teams and the terminal share.

The core (PolicyBot.answer with `on_text`) hands every text delta of an LLM answer to a `TextSink` as it arrives,
then returns the final Answer as always. That final Answer is the truth: its citations are renumbered and
checked, and when the check fails it is the extractive answer, which the platform shows *instead* of what was
streamed (`replaces`). Cached, extractive, refusal and small-talk answers send no deltas: they are posted at once.

The core is synchronous and runs in a thread; the chat adapters are asyncio. `DeltaFeed` is the sink that crosses
over (deltas are appended on the event loop, in order), and `relay` is the one pacing policy: the first text as
soon as it exists, then at most one update every `interval_s` (Slack's appendStream and Teams' streaming
activities are rate limited; a call per token would be refused), never after the answer is done.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Protocol

DEFAULT_INTERVAL_S = 1.0


class TextSink(Protocol):
    """Receives each piece of answer text as the LLM writes it. Must not raise, and must return quickly (it runs
    on the thread that reads the LLM's stream)."""

    def __call__(self, delta: str) -> None: ...


class DeltaFeed:
    """A TextSink for a core running in a worker thread, read on the event loop: `text` is everything so far."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.text = ""
        self.first_at: float | None = None  # time.monotonic() of the first delta
        self.changed = asyncio.Event()

    def __call__(self, delta: str) -> None:
        # Called from the core's thread: the append happens on the loop, in the order the deltas came.
        self.loop.call_soon_threadsafe(self._append, delta)

    def _append(self, delta: str) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.text += delta
        self.changed.set()


# show(text so far, what is new since the last call) -> whether to keep showing updates
Show = Callable[[str, str], Awaitable[bool]]


async def relay(feed: DeltaFeed, work: asyncio.Future, show: Show, interval_s: float = DEFAULT_INTERVAL_S) -> str:
    """Call `show` with the text so far while `work` (the answer) runs: at the first text, then at most once per
    `interval_s`. Stops when the answer is done or `show` says False; returns the text that was shown (the
    caller compares it with the final answer)."""
    shown = ""
    last: float | None = None
    loop = asyncio.get_running_loop()
    while not work.done():
        feed.changed.clear()
        if feed.text.strip() and feed.text != shown and (last is None or loop.time() - last >= interval_s):
            text = feed.text  # deltas keep coming while `show` runs: they are new next time, not shown now
            try:
                keep = await show(text, text[len(shown):])
            finally:
                shown, last = text, loop.time()
            if not keep:
                break
            continue
        waiters = {work} if feed.text != shown else {work, asyncio.ensure_future(feed.changed.wait())}
        timeout = None if last is None or feed.text == shown else max(0.0, last + interval_s - loop.time())
        done, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not work:
                task.cancel()
    return shown


def replaces(shown: str, final_text: str) -> bool:
    """Whether the final text is not simply the streamed text continued: the user must see it replace what was
    shown (a failed citation check, renumbered markers)."""
    return bool(shown) and not final_text.startswith(shown.strip())


def unsent(sent: str, final_text: str) -> str:
    """The part of the final text not shown yet, when the final text continues what was sent (`replaces` is
    False). The sent text may end in whitespace the final text has too: it is not sent twice."""
    rest = final_text[len(sent.strip()):]
    sent_blanks = len(sent) - len(sent.rstrip())
    head = rest[:sent_blanks]
    return rest[len(head) - len(head.lstrip()):]
