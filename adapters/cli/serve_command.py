"""`policybot serve`: Slack and Teams over HTTP on one port."""

from __future__ import annotations

import argparse

from aiohttp import web

from adapters.server import build_app
from bot import logs
from bot.config import Settings
from bot.core import PolicyBot
from bot.runtime import build_runtime


def register(commands) -> None:
    p = commands.add("serve", serve, "serve Slack (/slack/events) and Teams (/api/messages) over HTTP")
    p.add_argument("--host", default=None, help="listen address (default POLICYBOT_HOST, 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default PORT, 3978)")


def serve(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure(settings.log_level, json_format=True)
    runtime = build_runtime(settings)
    bot = PolicyBot(runtime)
    bot.warm_up()
    app = build_app(bot)
    web.run_app(app, host=args.host or settings.host, port=args.port or settings.port, shutdown_timeout=30)
    runtime.close()
    return 0
