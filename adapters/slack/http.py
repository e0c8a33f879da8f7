"""Mounting Slack on `policybot serve`'s aiohttp application.

    POST /slack/events   events, slash commands and interactivity (one Request URL for all three), when
                         SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are set. The signature and the timestamp
                         (5 minutes) are verified before the body is read as JSON: a forged or stale request
                         gets 401, a signed body that isn't a Slack payload 400, one over 2 MB 413.
    Socket Mode          when SLACK_APP_TOKEN (xapp-...) is set: the app connects out to Slack at start-up,
                         so no public URL is needed.

Nothing is mounted when Slack is not configured. On shutdown the background answers are awaited before the
answer pool is closed (the server's cleanup hook runs after this shutdown hook).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.server import Mounting
from adapters.slack.app import SlackAdapter
from adapters.slack.replier import SlackReplier

log = logging.getLogger(__name__)

PATH = "/slack/events"
SLACK_KEY = web.AppKey("slack", SlackAdapter)
SOCKET_KEY = web.AppKey("slack_socket_mode", object)
SIGNATURE_MAX_AGE_S = 5 * 60  # Slack's (and bolt's) replay window


def mount(app: web.Application, mounting: Mounting) -> SlackAdapter | None:
    """Slack on the app (adapters.server.Mount): HTTP events and/or Socket Mode, or nothing when unconfigured."""
    settings = mounting.bot.settings
    http_mode = bool(settings.slack_signing_secret and settings.slack_bot_token)
    socket_mode = bool(settings.slack_app_token and settings.slack_bot_token)
    if not (http_mode or socket_mode):
        if settings.slack_bot_token or settings.slack_signing_secret or settings.slack_app_token:
            log.warning("Slack is half configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP) "
                        "or SLACK_APP_TOKEN (Socket Mode)")
        return None

    adapter = SlackAdapter(mounting.bot, mounting.run_blocking, verify_requests=http_mode)
    adapter.background.queue = mounting.queue
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
    """Check the request before bolt sees it: bolt parses the body before it verifies the signature (bad JSON
    from anyone is a 500 there) and logs the whole body of a request it refuses. Here an unsigned request is a 401
    and a signed one that isn't a Slack payload a 400; bolt still verifies again."""
    adapter = request.app[SLACK_KEY]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "request body too large")
    if not signed(adapter.settings.slack_signing_secret or "", raw, request.headers):
        log.warning("refused a Slack request without a valid signature (%d bytes)", len(raw))
        return _error(401, "invalid request")
    try:
        bolt_request = slack_request(raw, request)
    except ValueError:
        log.warning("refused a signed Slack request whose body is not a Slack payload (%d bytes)", len(raw))
        return _error(400, "expected a Slack event, command or interaction payload")
    return await to_aiohttp_response(await adapter.app.async_dispatch(bolt_request))


def signed(secret: str, body: bytes, headers) -> bool:
    """Slack's v0 signature (HMAC-SHA256 of `v0:TIMESTAMP:BODY`) over the raw bytes, with a timestamp within
    5 minutes. Computed here rather than with slack_sdk's SignatureVerifier, which decodes the body first (bytes
    that aren't UTF-8 raise there)."""
    timestamp, signature = headers.get("X-Slack-Request-Timestamp", ""), headers.get("X-Slack-Signature", "")
    if not secret or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_S:
        return False
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def slack_request(raw: bytes, request: web.Request) -> AsyncBoltRequest:
    """The bolt request for a body that is one JSON object (events), a form with a JSON object in `payload`
    (interactivity) or a plain form (slash commands); ValueError for anything else."""
    try:
        # Bolt parses the body and reads ids out of the shape it expects (a JSON list: AttributeError).
        bolt_request = AsyncBoltRequest(body=raw.decode("utf-8"), query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as err:  # bad UTF-8 and JSON: ValueError
        raise ValueError(f"not a Slack payload ({type(err).__name__})") from err
    if not isinstance(bolt_request.body, dict):
        raise ValueError("not a JSON object")
    problem = payload_problem(bolt_request.body)
    if problem:
        raise ValueError(problem)
    return bolt_request


_OBJECTS = ("event", "view", "user", "container", "channel", "message")  # when present, always objects
# In the events the listeners answer; other events carry objects under the same names (team_join's user).
_QUESTION_EVENTS = ("app_mention", "message")
_EVENT_TEXTS = ("user", "channel", "text", "ts", "thread_ts", "subtype", "channel_type", "bot_id")


def payload_problem(body: dict) -> str | None:
    """What makes a signed body unlike anything Slack sends, in the parts bolt's middleware and our listeners
    read without checking (a 500 with a traceback there); None when it looks like Slack's."""
    for key in _OBJECTS:
        if key in body and not (isinstance(body[key], dict) and _text(body[key].get("id"))):
            return f"{key} is not an object with a text id"
    for key in ("actions", "authorizations"):
        if key in body and not _objects(body[key]):
            return f"{key} is not a list of objects"
    if not all(_text(action.get("value")) for action in body.get("actions") or []):
        return "an action's value is not text"
    event = body.get("event") or {}
    if not _text(event.get("type")):
        return "the event type is not text"
    if event.get("type") in _QUESTION_EVENTS and not all(_text(event.get(key)) for key in _EVENT_TEXTS):
        return "a message field is not text"
    view = body.get("view")
    if view is not None:
        if not isinstance(view.get("type"), str) or not _text(view.get("private_metadata")):
            return "the view has no type"
        state = view.get("state") or {}
        values = state.get("values") or {} if isinstance(state, dict) else None
        if not isinstance(values, dict) or not all(
                isinstance(block, dict) and _objects(list(block.values()))
                and all(_text(element.get("value")) for element in block.values()) for block in values.values()):
            return "the view's state is not blocks of input values"
    return None


def _text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _objects(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def start_socket_mode(adapter: SlackAdapter, app_token: str):
    """Connect the adapter's bolt app to Slack over Socket Mode; returns the handler (close_async() to stop)."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(adapter.app, app_token, web_client=adapter.client)
    await handler.connect_async()
    return handler


def use_pooled_session(adapter: SlackAdapter | SlackReplier) -> None:
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
    await app[SLACK_KEY].background.drain()
