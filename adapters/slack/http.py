"""Mounting Slack on `policybot serve`'s aiohttp application.

    POST /slack/events   events, slash commands and interactivity (one Request URL for all three), when
                         SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are set. Bolt verifies the signature and the
                         timestamp (5 minutes); a forged or stale request gets 401.
    Socket Mode          when SLACK_APP_TOKEN (xapp-...) is set: the app connects out to Slack at start-up,
                         so no public URL is needed.

Nothing is mounted when Slack is not configured. On shutdown the background answers are awaited before the
answer pool is closed (the server's cleanup hook runs after this shutdown hook).
"""

from __future__ import annotations

import functools
import logging

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from adapters.server import QUEUE_KEY, run_blocking
from adapters.slack.app import SlackAdapter
from bot.core import PolicyBot

log = logging.getLogger(__name__)

PATH = "/slack/events"
SLACK_KEY = web.AppKey("slack", SlackAdapter)
SOCKET_KEY = web.AppKey("slack_socket_mode", object)


def add_routes(app: web.Application, bot: PolicyBot) -> SlackAdapter | None:
    settings = bot.settings
    http_mode = bool(settings.slack_signing_secret and settings.slack_bot_token)
    socket_mode = bool(settings.slack_app_token and settings.slack_bot_token)
    if not (http_mode or socket_mode):
        if settings.slack_bot_token or settings.slack_signing_secret or settings.slack_app_token:
            log.warning("Slack is half configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP) "
                        "or SLACK_APP_TOKEN (Socket Mode)")
        return None

    adapter = SlackAdapter(bot, functools.partial(run_blocking, app), verify_requests=http_mode)
    adapter.queue = app.get(QUEUE_KEY)
    app[SLACK_KEY] = adapter
    app.on_startup.append(_open_http_session)
    app.on_cleanup.append(_close_http_session)
    if http_mode:
        app.router.add_post(PATH, slack_events)
    if socket_mode:
        app.on_startup.append(_start_socket_mode)
    app.on_shutdown.append(_shutdown)
    log.info("Slack enabled (%s)", " and ".join(m for m, on in (("HTTP " + PATH, http_mode),
                                                                 ("Socket Mode", socket_mode)) if on))
    return adapter


async def slack_events(request: web.Request) -> web.StreamResponse:
    adapter = request.app[SLACK_KEY]
    bolt_response = await adapter.app.async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


async def start_socket_mode(adapter: SlackAdapter, app_token: str):
    """Connect the adapter's bolt app to Slack over Socket Mode; returns the handler (close_async() to stop)."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(adapter.app, app_token, web_client=adapter.client)
    await handler.connect_async()
    return handler


def use_pooled_session(adapter: SlackAdapter) -> None:
    """One pooled session for every Web API call; by default slack_sdk opens and closes one per call."""
    adapter.client.session = aiohttp.ClientSession()


async def _open_http_session(app: web.Application) -> None:
    use_pooled_session(app[SLACK_KEY])


async def _close_http_session(app: web.Application) -> None:
    session = app[SLACK_KEY].client.session
    if session is not None:
        await session.close()


async def _start_socket_mode(app: web.Application) -> None:
    adapter = app[SLACK_KEY]
    app[SOCKET_KEY] = await start_socket_mode(adapter, adapter.settings.slack_app_token)
    log.info("Slack Socket Mode connected")


async def _shutdown(app: web.Application) -> None:
    handler = app.get(SOCKET_KEY)
    if handler is not None:
        try:
            await handler.close_async()
        except Exception:  # shutting down anyway; the answers below still matter more
            log.exception("closing the Slack Socket Mode connection failed")
    await app[SLACK_KEY].drain()
