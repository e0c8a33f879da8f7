"""The event loop `policybot serve` and the answer workers run on: uvloop (libuv) where it is installed, else
asyncio's own.

Why: with most answers served from the cache, a good share of a server's CPU was asyncio's own Python code
(sockets, transports, callbacks: benchmarks/README.md, answers per core); uvloop does that work in C.
POLICYBOT_EVENT_LOOP=asyncio runs asyncio's loop instead (to compare, or to rule the loop out when debugging).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

EventLoopKind = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def new_event_loop(kind: EventLoopKind = "uvloop") -> asyncio.AbstractEventLoop:
    """A new loop of `kind`; asyncio's when uvloop is asked for but not installed (it has no Windows build)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; running on asyncio's event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], kind: EventLoopKind = "uvloop") -> T:
    """asyncio.run(main) on a loop of `kind`."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(main)
