"""`policybot serve`: Slack and Teams over HTTP on one port, in one process or several (--workers)."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from adapters import memberships
from adapters.answer_worker import run_answer_worker
from adapters.platforms import PLATFORMS
from adapters.server import build_app
from adapters.settings import Settings
from adapters.supervisor import supervise
from adapters.turn_queue import TurnQueue
from bot import logs
from bot.core import PolicyBot
from bot.runtime import build_runtime

log = logging.getLogger(__name__)


def register(commands) -> None:
    p = commands.add("serve", serve, "serve Slack (/slack/events) and Teams (/api/messages) over HTTP")
    p.add_argument("--host", default=None, help="listen address (default POLICYBOT_HOST, 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default PORT, 3978)")
    p.add_argument("--workers", type=int, default=None,
                   help="server processes sharing the port (default POLICYBOT_WORKERS, 1)")
    p.add_argument("--answer-workers", type=int, default=None,
                   help="processes that answer the questions the servers acknowledge (default "
                        "POLICYBOT_ANSWER_WORKERS, 0: the servers answer themselves)")


def serve(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure(settings.log_level, json_format=True)
    updates = {"host": args.host or settings.host, "port": settings.port if args.port is None else args.port}
    workers = args.workers if args.workers is not None else settings.workers
    answer_workers = args.answer_workers if args.answer_workers is not None else settings.answer_workers
    if workers < 1 or answer_workers < 0:
        print("--workers must be 1 or more, and --answer-workers 0 or more")
        return 2
    if workers > 1 and updates["port"] == 0:
        print("--workers needs a fixed --port (the workers share it)")
        return 2
    settings = settings.model_copy(update=updates)
    if workers == 1 and answer_workers == 0:
        run_server(settings, reuse_port=False)
        return 0
    web_target = run_queueing_server if answer_workers else run_web_worker
    return supervise(settings, [web_target] * workers + [run_answer_worker] * answer_workers)


def run_web_worker(settings: Settings) -> None:
    """One of `--workers` server processes (spawned by adapters.supervisor)."""
    logs.configure(settings.log_level, json_format=True)
    run_server(settings, reuse_port=True, apply_migrations=False)


def run_queueing_server(settings: Settings) -> None:
    """A server process that leaves answering to the answer workers (spawned by adapters.supervisor)."""
    logs.configure(settings.log_level, json_format=True)
    queue = TurnQueue.from_url(settings.redis_url, max_wait_s=settings.max_queue_wait_s)
    run_server(settings, reuse_port=True, apply_migrations=False, queue=queue)


def run_server(settings: Settings, reuse_port: bool, apply_migrations: bool = True,
               queue: TurnQueue | None = None) -> None:
    runtime = build_runtime(settings, apply_migrations=apply_migrations)
    bot = PolicyBot(runtime)
    memberships.install(bot)  # who holds which document audience
    bot.warm_up()
    app = build_app(bot, PLATFORMS, queue)
    log.info("listening on %s:%d", settings.host, settings.port)
    try:
        web.run_app(app, host=settings.host, port=settings.port, shutdown_timeout=30, reuse_port=reuse_port,
                    print=None)
    finally:
        runtime.close()
