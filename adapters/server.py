"""`policybot serve`: one aiohttp application for every platform.

    /slack/events   Slack events, slash commands and interactivity (when Slack is configured)
    /api/messages   Microsoft Teams (Bot Framework)
    /healthz        PostgreSQL, Redis and LLM status; 503 when a required part is down
    /metrics        Prometheus

The platforms are mounts the caller gives (adapters.platforms.PLATFORMS for `serve`): each gets the app and a
`Mounting` (the core, the answer pool, the turn queue) and adds its routes and hooks. The server imports no
platform module, so a platform may import from here without a cycle.

Answers run on a bounded thread pool because the core is synchronous (SQLAlchemy, redis-py), or, with a turn
queue (`serve --answer-workers M`), in answer-worker processes. State lives in PostgreSQL and Redis, so any
number of these processes can run behind a load balancer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.turn_queue import TurnQueue
from bot import logs, metrics
from bot.core import PolicyBot
from bot.health import HealthChecker, summary

log = logging.getLogger(__name__)

BOT_KEY = web.AppKey("policybot", PolicyBot)
EXECUTOR_KEY = web.AppKey("executor", ThreadPoolExecutor)
HEALTH_KEY = web.AppKey("health", HealthChecker)
QUEUE_KEY = web.AppKey("turn_queue", TurnQueue)  # present when answer workers answer (adapters.turn_queue)
MAX_BODY_BYTES = 2 * 1024 * 1024  # chat payloads are small; uploads are fetched by URL, not posted here

RunBlocking = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Mounting:
    """What the server gives each platform it mounts."""

    bot: PolicyBot
    run_blocking: RunBlocking  # a synchronous core call on the server's answer pool
    queue: TurnQueue | None  # present when answer workers answer (adapters.turn_queue)


# A platform: adds its routes and start-up/shutdown hooks to the app (adapters.slack.http.mount, ...).
Mount = Callable[[web.Application, Mounting], object]


def _platform(path: str) -> str:
    if path.startswith("/slack/"):
        return "slack"
    if path.startswith("/api/messages"):
        return "teams"
    return "ops"


@web.middleware
async def observe(request: web.Request, handler):
    """Request id for the logs, and request count and latency by platform for /metrics."""
    token = logs.request_id.set(request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16])
    platform = _platform(request.path)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as err:
        status = err.status
        raise
    finally:
        if platform != "ops":
            metrics.requests.labels(platform, str(status)).inc()
            metrics.request_seconds.labels(platform).observe(time.perf_counter() - started)
        logs.request_id.reset(token)


async def healthz(request: web.Request) -> web.Response:
    checker = request.app[HEALTH_KEY]
    healthy, body = summary(await asyncio.get_running_loop().run_in_executor(None, checker.check))
    return web.json_response(body, status=200 if healthy else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(metrics.exposed_registry()),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(bot: PolicyBot, mounts: Sequence[Mount], queue: TurnQueue | None = None) -> web.Application:
    """The aiohttp app with /healthz, /metrics and the given platforms, in order."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe])
    app[BOT_KEY] = bot
    if queue is not None:
        app[QUEUE_KEY] = queue

        async def close_queue(app: web.Application) -> None:
            await app[QUEUE_KEY].close()

        app.on_cleanup.append(close_queue)
    app[HEALTH_KEY] = HealthChecker(bot.runtime)
    app[EXECUTOR_KEY] = answer_pool(bot.settings)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    mounting = Mounting(bot=bot, run_blocking=partial(run_blocking, app), queue=queue)
    for mount in mounts:
        mount(app, mounting)

    async def close_executor(app: web.Application) -> None:
        # Cleanup runs after in-flight requests and background answers finished: nothing is cut off.
        await asyncio.get_running_loop().run_in_executor(None, lambda: app[EXECUTOR_KEY].shutdown(wait=True))
        await bot.events.aclose()  # the loop's redis.asyncio client (bot.platform_events)

    app.on_cleanup.append(close_executor)
    return app


def answer_pool(settings) -> ThreadPoolExecutor:
    """Threads for the synchronous core: room for every allowed LLM call plus a few quick calls beside them."""
    return ThreadPoolExecutor(max_workers=max(8, settings.llm_concurrency + 4), thread_name_prefix="answer")


async def run_blocking(app: web.Application, function, *args, **kwargs):
    """Run a synchronous core call on the answer pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[EXECUTOR_KEY], lambda: function(*args, **kwargs))
