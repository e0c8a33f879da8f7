"""Outbound Bot Framework clients kept across turns.

botbuilder builds a new ConnectorClient (for replies) and a new UserTokenClient for every activity: each one a
msrest configuration, a requests session and its connection pool, so every reply also opened a new connection.
Under load that was a fifth of the server's CPU (benchmarks/README.md, load profile). A client is tied only to
the bot's app id, the channel's service URL and the token audience, and its credentials renew their own tokens,
so one client per (service URL, audience) and one token client per app id serve every turn.

The activities themselves (send, reply, update: every answer, stream chunk and typing indicator) go out on one
shared aiohttp session (AsyncConversations) instead of msrest's async sender, which runs each request through
`requests` on a thread and was the largest share of the server's CPU left (benchmarks/README.md, load.py). The
REST calls, JSON bodies (botbuilder's own serializer) and bearer token are those of ConnectorClient; every other
connector operation is still ConnectorClient's. It sits behind the Teams adapter alone, so a move to the M365
Agents SDK replaces this module, not the bot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from urllib.parse import quote

import aiohttp
from botbuilder.schema import ResourceResponse
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    JwtTokenValidation,
    UserTokenClient,
)

MAX_CLIENTS = 64  # service URLs are per region/cloud: a handful in practice
SEND_TIMEOUT_S = 30.0  # a reply the connector doesn't take within this fails the send, like msrest's default
TOKEN_REUSE_S = 60.0  # msal hands out tokens valid for 5 more minutes at least; ask it again after a minute


class ReusedClients:
    """The clients of one endpoint, least recently used dropped first."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        self.connectors: OrderedDict[tuple, ConnectorClient] = OrderedDict()
        self.token_clients: OrderedDict[str, UserTokenClient] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled HTTP session activities are sent on (made in the running event loop on first use)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def keep(self, cache: OrderedDict, key, client) -> None:
        cache[key] = client
        cache.move_to_end(key)
        while len(cache) > self.max_clients:
            cache.popitem(last=False)

    def with_reused_connector(self, result: AuthenticateRequestResult) -> AuthenticateRequestResult:
        if result.connector_factory is not None and not isinstance(result.connector_factory, _ReusingFactory):
            app_id = _app_id(result.claims_identity)
            result.connector_factory = _ReusingFactory(result.connector_factory, self, app_id)
        return result


class _ReusingFactory(ConnectorFactory):
    def __init__(self, inner: ConnectorFactory, clients: ReusedClients, app_id: str) -> None:
        self.inner = inner
        self.clients = clients
        self.app_id = app_id

    async def create(self, service_url: str, audience: str = None) -> ConnectorClient:
        key = (self.app_id, service_url, audience)
        client = self.clients.connectors.get(key)
        if client is None:
            client = await self.inner.create(service_url, audience)
            if isinstance(client.config.credentials, AppCredentials):  # the kind whose token _bearer knows
                client.conversations = AsyncConversations(client, self.clients.session)
        self.clients.keep(self.clients.connectors, key, client)
        return client


class ConnectorError(Exception):
    """The connector refused an activity: `response.status_code` and `response.text` say how (as msrest's
    ErrorResponseException does, so callers read the status the same way)."""

    def __init__(self, status_code: int, text: str, url: str) -> None:
        self.response = _Refusal(status_code, text)
        try:
            error = json.loads(text).get("error") or {}
            detail = f"({error.get('code')}) {error.get('message')}"
        except (ValueError, AttributeError):
            detail = text[:200]
        super().__init__(f"the Bot Framework connector answered HTTP {status_code} to {url}: {detail}")


class _Refusal:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code = status_code
        self.text = text


class AsyncConversations:
    """ConnectorClient.conversations with send, reply and update on aiohttp; the rest is ConnectorClient's."""

    def __init__(self, client: ConnectorClient, session) -> None:
        self._client = client
        self._inner = client.conversations
        self._session = session  # ReusedClients.session: the shared pool
        self._token: tuple[str, float] | None = None

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def send_to_conversation(self, conversation_id: str, activity, **options) -> ResourceResponse:
        if options:  # custom headers, raw responses: msrest's path
            return await self._inner.send_to_conversation(conversation_id, activity, **options)
        return await self._send("POST", conversation_id, None, activity)

    async def reply_to_activity(self, conversation_id: str, activity_id: str, activity,
                                **options) -> ResourceResponse:
        if options:
            return await self._inner.reply_to_activity(conversation_id, activity_id, activity, **options)
        return await self._send("POST", conversation_id, activity_id, activity)

    async def update_activity(self, conversation_id: str, activity_id: str, activity,
                              **options) -> ResourceResponse:
        if options:
            return await self._inner.update_activity(conversation_id, activity_id, activity, **options)
        return await self._send("PUT", conversation_id, activity_id, activity)

    async def _send(self, method: str, conversation_id: str, activity_id: str | None, activity) -> ResourceResponse:
        # The URL and headers ConnectorClient builds (msrest quotes path parameters with safe='').
        path = f"v3/conversations/{quote(conversation_id, safe='')}/activities"
        if activity_id is not None:
            path += f"/{quote(activity_id, safe='')}"
        url = f"{self._client.config.base_url.rstrip('/')}/{path}"
        headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8",
                   "x-ms-conversation-id": conversation_id}
        token = await self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(self._client._serialize.body(activity, "Activity"))
        async with self._session().request(method, url, data=body.encode(), headers=headers) as response:
            text = await response.text()
            if response.status not in (200, 201, 202):
                raise ConnectorError(response.status, text, url)
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        return ResourceResponse(id=data.get("id")) if isinstance(data, dict) else None

    async def _bearer(self) -> str | None:
        """The token ConnectorClient's credentials would sign the request with; none in anonymous mode."""
        credentials = self._client.config.credentials
        if not credentials._should_set_token(None):  # no app id: the Emulator / anonymous mode
            return None
        now = time.monotonic()
        if self._token is None or now - self._token[1] > TOKEN_REUSE_S:
            # msal's cache answers almost always; a renewal is an HTTP call, so off the event loop
            self._token = (await asyncio.to_thread(credentials.get_access_token), now)
        return self._token[0]


class ReusingAuthentication(BotFrameworkAuthentication):
    """The endpoint's BotFrameworkAuthentication with user-token clients reused; everything else delegated."""

    def __init__(self, inner: BotFrameworkAuthentication, clients: ReusedClients) -> None:
        self.inner = inner
        self.clients = clients

    async def authenticate_request(self, activity, auth_header: str) -> AuthenticateRequestResult:
        return self.clients.with_reused_connector(await self.inner.authenticate_request(activity, auth_header))

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str):
        return self.clients.with_reused_connector(
            await self.inner.authenticate_streaming_request(auth_header, channel_id_header))

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return _ReusingFactory(self.inner.create_connector_factory(claims_identity), self.clients,
                               _app_id(claims_identity))

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        key = _app_id(claims_identity)
        client = self.clients.token_clients.get(key)
        if client is None:
            client = await self.inner.create_user_token_client(claims_identity)
        self.clients.keep(self.clients.token_clients, key, client)
        return client

    def create_bot_framework_client(self):
        return self.inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self.inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self.inner.authenticate_channel_request(auth_header)


def _app_id(identity: ClaimsIdentity | None) -> str:
    if identity is None:
        return ""
    return JwtTokenValidation.get_app_id_from_claims(identity.claims) or ""
