"""`policybot serve`: one aiohttp application for every platform.

Each platform module adds its routes when it is configured: Slack (`/slack/events`) and Teams
(`/api/messages`). Answers run on a thread pool because the core is synchronous (SQLAlchemy, redis-py).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from bot.core import PolicyBot

log = logging.getLogger(__name__)

BOT_KEY = web.AppKey("policybot", PolicyBot)
EXECUTOR_KEY = web.AppKey("executor", ThreadPoolExecutor)


def build_app(bot: PolicyBot) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[BOT_KEY] = bot
    app[EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=max(8, bot.settings.llm_concurrency + 4),
                                           thread_name_prefix="answer")
    for module in ("adapters.slack.http", "adapters.teams.http"):
        try:
            platform = __import__(module, fromlist=["add_routes"])
        except ModuleNotFoundError:
            continue
        platform.add_routes(app, bot)

    async def close_executor(app: web.Application) -> None:
        app[EXECUTOR_KEY].shutdown(wait=True)

    app.on_cleanup.append(close_executor)
    return app


async def run_blocking(app: web.Application, function, *args, **kwargs):
    """Run a synchronous core call on the answer pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[EXECUTOR_KEY], lambda: function(*args, **kwargs))
