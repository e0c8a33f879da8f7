"""POST /api/messages: the Bot Framework endpoint Teams (or the Bot Framework Emulator) delivers activities to.

Always mounted. Authentication comes from Settings (MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD,
MICROSOFT_APP_TYPE, MICROSOFT_APP_TENANT_ID) through ConfigurationBotFrameworkAuthentication:

- no app id: anonymous mode, for the Bot Framework Emulator and local tests. Nothing is verified (the
  activity names the user, so admin rights, and the serviceUrl replies are sent to; botbuilder 4.17 no longer
  restricts serviceUrls), so anonymous mode accepts only direct requests from a loopback address (no proxy
  headers): `policybot serve` listens on 0.0.0.0 for Slack even when Teams isn't configured;
- an app id: every request must carry a valid Bot Framework token, else 401.

The request is handled here rather than with CloudAdapter.process(), which in 4.17 answers 500 for invoke
responses whose body is a dict or None: the activity is parsed and authenticated here, then given to
`adapter.process_activity(auth_result, activity, bot.on_turn)`, and an invoke's InvokeResponse is written
with its own status and a JSON body (or none).

Messages are answered in the background after a 202: an LLM answer can take longer than the ~15 s the
Bot Framework waits for the HTTP response, after which Teams may deliver the message again. Invokes (feedback)
are handled inline, as their HTTP response is the answer. Background turns are awaited at shutdown.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field

import jwt
from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount, DeliveryModes
from botframework.connector.auth import AuthenticateRequestResult, BotFrameworkAuthentication, ClaimsIdentity
from msrest.serialization import Model
from msrest.universal_http.requests import ClientRetryPolicy

from adapters.background import Background
from adapters.server import Mounting
from adapters.settings import Settings
from adapters.teams.bot import PLATFORM, TeamsActivities
from adapters.teams.clients import ReusedClients, ReusingAuthentication
from adapters.teams.render import text_activity
from bot.core import PolicyBot


# msrest builds every connector client's retry list by testing 999 codes against a 501-item *list*
# (~3 ms of CPU per reply, a third of the server's time under load: benchmarks/README.md). Same codes, as a set.
ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)

log = logging.getLogger(__name__)

ROUTE = "/api/messages"
ACTIVITY_TURN = "teams_activity"  # the kind of queued turn an answer worker runs with TeamsEndpoint.run_queued
APP_TYPES = {"multitenant": "MultiTenant", "singletenant": "SingleTenant", "userassignedmsi": "UserAssignedMSI"}


@dataclass(frozen=True)
class BotFrameworkConfig:
    """The configuration object ConfigurationBotFrameworkAuthentication reads (attribute names are botbuilder's)."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TYPE: str
    APP_TENANTID: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "BotFrameworkConfig":
        app_type = APP_TYPES.get((settings.microsoft_app_type or "MultiTenant").strip().lower())
        if app_type is None:
            raise ValueError(f"MICROSOFT_APP_TYPE must be MultiTenant, SingleTenant or UserAssignedMSI, "
                             f"not {settings.microsoft_app_type!r}")
        app_id = settings.microsoft_app_id.strip()
        tenant = settings.microsoft_app_tenant_id.strip()
        if app_id and app_type != "MultiTenant" and not tenant:
            raise ValueError(f"MICROSOFT_APP_TENANT_ID is required with MICROSOFT_APP_TYPE={app_type}")
        if app_id and app_type == "SingleTenant" and not settings.microsoft_app_password:
            raise ValueError("MICROSOFT_APP_PASSWORD is required with MICROSOFT_APP_TYPE=SingleTenant")
        return cls(app_id, settings.microsoft_app_password, app_type, tenant)

    @property
    def anonymous(self) -> bool:
        return not self.APP_ID


@dataclass
class TeamsEndpoint:
    adapter: CloudAdapter
    auth: BotFrameworkAuthentication
    bot: TeamsActivities
    anonymous: bool
    clients: ReusedClients = field(default_factory=ReusedClients)
    # Message turns after the 202; its queue is set when answer workers run the turns (adapters.turn_queue).
    background: Background = field(default_factory=lambda: Background(PLATFORM))

    async def handle(self, request: web.Request) -> web.Response:
        if self.anonymous and not _direct_local_request(request):
            log.warning("refused a request from %s: the Teams endpoint is in anonymous mode (no MICROSOFT_APP_ID), "
                        "which accepts only direct requests from this machine", request.remote)
            return _error(401, "unauthorized: anonymous mode accepts only local requests; set MICROSOFT_APP_ID")
        if "application/json" not in request.headers.get("Content-Type", "").lower():
            return _error(415, "expected application/json")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "request body too large")
        body, activity = parse_activity(raw)
        if activity is None:
            return _error(400, "expected a Bot Framework activity")

        try:
            auth_result = await self.auth.authenticate_request(activity, request.headers.get("Authorization", ""))
        except (PermissionError, jwt.PyJWTError) as err:
            log.warning("refused an unauthenticated Bot Framework request: %s", err)
            return _error(401, "unauthorized")
        except OSError as err:  # the signing keys could not be fetched: our problem, not the caller's
            log.error("could not validate a Bot Framework token (signing keys unreachable): %s", err)
            return _error(503, "authentication unavailable")
        except Exception as err:  # a token botbuilder can't even parse
            log.warning("refused a Bot Framework request with an invalid token: %s: %s", type(err).__name__, err)
            return _error(401, "unauthorized")
        missing = missing_fields(activity)
        if missing:  # checked once the caller is known, so an unauthenticated request still gets its 401
            return _error(400, f"the activity has no {', '.join(missing)}")

        if activity.type == ActivityTypes.invoke or activity.delivery_mode == DeliveryModes.expect_replies:
            activity = full_activity(body)
            if activity is None:
                return _error(400, "expected a Bot Framework activity")
            try:
                response = await self.adapter.process_activity(auth_result, activity, self.bot.on_turn)
            except PermissionError:
                return _error(401, "unauthorized")
            except Exception:
                log.exception("Teams %s activity %r failed", activity.type, activity.name)
                return _error(500, "the bot failed")
            return invoke_http_response(response)

        await self.background.hand_off(ACTIVITY_TURN, queued_turn(auth_result, body),
                                       lambda: self._turn(auth_result, body, self.bot.on_turn),
                                       lambda: self._turn(auth_result, body, self.bot.say_busy))
        return web.Response(status=202)

    async def _turn(self, auth_result: AuthenticateRequestResult, body: dict, logic=None) -> None:
        activity = full_activity(body)
        if activity is None:  # accepted with a 202 (Teams never sends one): nothing to answer
            return
        try:
            await self.adapter.process_activity(auth_result, activity, logic or self.bot.on_turn)
        except Exception:
            log.exception("Teams %s activity %s failed", activity.type, activity.id)

    async def run_queued(self, turn: dict) -> None:
        """Run a turn a web process put on the queue (in an answer worker): its request was authenticated there,
        so the identity it established is rebuilt rather than checked again."""
        identity = ClaimsIdentity(turn["claims"], turn["authenticated"], turn.get("authentication_type"))
        result = AuthenticateRequestResult()
        result.audience = turn.get("audience")
        result.caller_id = turn.get("caller_id")
        result.claims_identity = identity
        result.connector_factory = self.auth.create_connector_factory(identity)
        await self._turn(result, turn["activity"])

    async def drain(self, _app: web.Application | None = None) -> None:
        """Let turns in progress finish (answers being sent) before the process stops."""
        await self.background.drain()

    async def close(self, _app: web.Application | None = None) -> None:
        """Close the connections activities go out on (at cleanup: after the last request and turn)."""
        await self.clients.aclose()


TEAMS_KEY = web.AppKey("teams", TeamsEndpoint)


def parse_activity(raw: bytes) -> tuple[dict | None, Activity | None]:
    """The body, and an Activity of what the endpoint reads before a turn runs (type, name, id, channel,
    serviceUrl, delivery mode, conversation, sender and recipient); (None, None) for bad JSON, not an object, or no
    `type`. The whole Activity (`full_activity`) is built only where a turn runs: msrest's deserializer was
    the largest share of a web process's CPU per queued Teams message (benchmarks/README.md, answers per core)."""
    try:
        body = json.loads(raw)
    except Exception:  # bad JSON or UTF-8
        return None, None
    if not isinstance(body, dict) or not _text(body.get("type")).strip():
        return None, None
    conversation, sender, recipient = body.get("conversation"), body.get("from"), body.get("recipient")
    activity = Activity(
        type=body["type"], name=_text(body.get("name")) or None, id=_text(body.get("id")) or None,
        channel_id=_text(body.get("channelId")) or None, service_url=_text(body.get("serviceUrl")) or None,
        delivery_mode=_text(body.get("deliveryMode")) or None,
        conversation=ConversationAccount(id=_text(conversation.get("id")) or None)
        if isinstance(conversation, dict) else None,
        from_property=ChannelAccount(id=_text(sender.get("id")) or None) if isinstance(sender, dict) else None,
        # botbuilder's authentication reads the recipient's role (an Emulator skill call)
        recipient=ChannelAccount(id=_text(recipient.get("id")) or None, role=_text(recipient.get("role")) or None)
        if isinstance(recipient, dict) else None)
    return body, activity


def full_activity(body: dict) -> Activity | None:
    """The body as botbuilder's Activity (msrest's deserializer); None when msrest can't read it."""
    try:
        return Activity().deserialize(body)
    except Exception:
        log.warning("a Bot Framework activity msrest cannot read as an Activity; not handled")
        return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def missing_fields(activity: Activity) -> list[str]:
    """What a turn needs that the activity lacks. Teams always sends them; without them the activity would be
    accepted with a 202 and its turn fail later, with nowhere to send the error."""
    fields = {"serviceUrl": activity.service_url,
              "conversation.id": activity.conversation.id if activity.conversation else None,
              "from.id": activity.from_property.id if activity.from_property else None}
    return [name for name, value in fields.items() if not (isinstance(value, str) and value.strip())]


def queued_turn(auth_result: AuthenticateRequestResult, body: dict) -> dict:
    identity = auth_result.claims_identity
    return {"activity": body, "claims": dict(identity.claims or {}), "authenticated": identity.is_authenticated,
            "authentication_type": identity.authentication_type, "audience": auth_result.audience,
            "caller_id": auth_result.caller_id}


def invoke_http_response(response: InvokeResponse | None) -> web.Response:
    """An InvokeResponse as HTTP: its status, and its body as JSON (none when the body is None)."""
    if response is None:
        return web.Response(status=200)
    status = int(response.status or 200)
    body = response.body
    if body is None:
        return web.Response(status=status)
    if isinstance(body, Model):
        body = body.serialize()
    return web.Response(status=status, text=json.dumps(body, default=str), content_type="application/json")


def build_endpoint(core: PolicyBot, run=None) -> TeamsEndpoint:
    config = BotFrameworkConfig.from_settings(core.settings)
    clients = ReusedClients()
    auth = ReusingAuthentication(ConfigurationBotFrameworkAuthentication(config), clients)
    adapter = CloudAdapter(auth)
    adapter.on_turn_error = _on_turn_error
    handler = TeamsActivities(core, run, allow_http_downloads=config.anonymous, app_id=config.APP_ID)
    return TeamsEndpoint(adapter=adapter, auth=auth, bot=handler, anonymous=config.anonymous, clients=clients)


def mount(app: web.Application, mounting: Mounting) -> TeamsEndpoint:
    """Teams on the app (adapters.server.Mount): always, in anonymous mode without MICROSOFT_APP_ID."""
    endpoint = build_endpoint(mounting.bot, mounting.run_blocking)
    endpoint.background.queue = mounting.queue
    app[TEAMS_KEY] = endpoint
    app.router.add_post(ROUTE, endpoint.handle)
    app.on_shutdown.append(endpoint.drain)
    app.on_cleanup.append(endpoint.close)
    if endpoint.anonymous:
        log.warning("Teams endpoint %s is in anonymous mode (no MICROSOFT_APP_ID): for the Bot Framework "
                    "Emulator and local tests only", ROUTE)


async def _on_turn_error(turn_context: TurnContext, error: Exception) -> None:
    log.error("Teams turn failed", exc_info=(type(error), error, error.__traceback__))
    if turn_context.activity.type == ActivityTypes.message:
        try:
            await turn_context.send_activity(text_activity("Sorry, something went wrong on my side. Please try again."))
        except Exception:  # the connector itself may be what failed
            pass


_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")


def _direct_local_request(request: web.Request) -> bool:
    """From a loopback address and not relayed by a proxy. Anonymous mode trusts whatever the activity says (who
    the user is, so admin rights; where to send replies), so it must not be reachable from anywhere else, even
    though `policybot serve` listens on 0.0.0.0 for Slack."""
    try:
        local = ipaddress.ip_address((request.remote or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False
    return local and not any(name in request.headers for name in _FORWARDING_HEADERS)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
