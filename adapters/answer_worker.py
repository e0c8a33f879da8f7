"""An answer-worker process of `policybot serve --answer-workers M`: runs the turns the web processes queued.

It builds the same core as a web process and only what replies, without an HTTP server: a Slack replier (no bolt
app: nothing is served here) and the Teams endpoint's turn pipeline. It feeds them the queued turns
(adapters.turn_queue): a Slack question goes to SlackReplier.answer, a Teams activity through the Teams turn
pipeline. It runs at a lower CPU priority than the web processes (WORKER_NICE),
so that acknowledging Slack and Teams within their deadlines always comes first. SIGTERM: stop taking turns,
finish the ones taken, exit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal

import redis.asyncio as aioredis

from adapters import memberships
from adapters.server import answer_pool
from adapters.settings import Settings
from adapters.slack.replier import QUESTION_TURN, SlackReplier
from adapters.slack.http import use_pooled_session
from adapters.teams.http import ACTIVITY_TURN, build_endpoint
from adapters.turn_queue import consume
from bot import logs
from bot.core import PolicyBot
from bot.runtime import build_runtime

log = logging.getLogger(__name__)

WORKER_NICE = 10
QUEUE_SOCKET_TIMEOUT_S = 5.0  # above the stream read's 0.5 s block


def run_answer_worker(settings: Settings) -> None:
    """Process entry point (spawned by adapters.supervisor)."""
    logs.configure(settings.log_level, json_format=True)
    try:
        os.nice(WORKER_NICE)
    except OSError as err:  # not fatal: only the priority of acks over answers is lost
        log.warning("could not lower the answer worker's CPU priority: %s", err)
    runtime = build_runtime(settings, apply_migrations=False)
    try:
        bot = PolicyBot(runtime)
        memberships.install(bot)  # who holds which document audience
        bot.warm_up()
        asyncio.run(work(bot))
    finally:
        runtime.close()


async def work(bot: PolicyBot, stop: asyncio.Event | None = None) -> None:
    """Answer queued turns until `stop` is set (or SIGTERM/SIGINT when run as a process)."""
    settings = bot.settings
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    executor = answer_pool(settings)

    async def run_blocking(function, *args, **kwargs):
        return await loop.run_in_executor(executor, functools.partial(function, *args, **kwargs))

    handlers = {}
    slack = None
    if settings.slack_bot_token:
        slack = SlackReplier(bot, run_blocking)
        use_pooled_session(slack)
        handlers[QUESTION_TURN] = lambda turn: slack.answer(**turn)
    teams = build_endpoint(bot, run_blocking)
    handlers[ACTIVITY_TURN] = teams.run_queued

    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=QUEUE_SOCKET_TIMEOUT_S,
                                     socket_connect_timeout=QUEUE_SOCKET_TIMEOUT_S)
    log.info("answer worker %d ready", os.getpid())
    try:
        await consume(client, handlers, stop, concurrency=max(16, 2 * settings.llm_concurrency))
        await teams.drain()
    finally:
        await teams.close()
        if slack is not None:
            await slack.client.session.close()
        await client.aclose()
        await bot.events.aclose()
        executor.shutdown(wait=True)
    log.info("answer worker %d stopped", os.getpid())
