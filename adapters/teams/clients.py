"""Outbound Bot Framework clients kept across turns.

botbuilder builds a new ConnectorClient (for replies) and a new UserTokenClient for every activity: each one a
msrest configuration, a requests session and its connection pool, so every reply also opened a new connection.
Under load that was a fifth of the server's CPU (benchmarks/README.md, load profile). A client is tied only to
the bot's app id, the channel's service URL and the token audience, and its credentials renew their own tokens,
so one client per (service URL, audience) and one token client per app id serve every turn.
"""

from __future__ import annotations

from collections import OrderedDict

from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    JwtTokenValidation,
    UserTokenClient,
)

MAX_CLIENTS = 64  # service URLs are per region/cloud: a handful in practice


class ReusedClients:
    """The clients of one endpoint, least recently used dropped first."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        self.connectors: OrderedDict[tuple, ConnectorClient] = OrderedDict()
        self.token_clients: OrderedDict[str, UserTokenClient] = OrderedDict()

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
        self.clients.keep(self.clients.connectors, key, client)
        return client


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
