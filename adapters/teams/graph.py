"""Entra group membership for document audiences through Microsoft Graph (bot/audiences.py's GroupLookup for
Teams users).

    POST {graph}/users/{user object id}/checkMemberGroups   {"groupIds": [...]}  ->  {"value": [ids the user is in]}

(transitive membership; up to 20 group ids a call). The bot's own Entra app calls it with an app-only token
(client credentials, msal) and needs the Graph application permission GroupMember.Read.All (or
User.Read.All + GroupMember.Read.All), granted by an admin. Teams users are known by their Entra object id
(adapters/teams/bot.py user_of), which is what Graph takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BATCH = 20  # checkMemberGroups takes at most 20 ids


class GraphGroups:
    kind = "entra_groups"

    def __init__(self, token: Callable[[], str], base_url: str, timeout_s: float = 10.0) -> None:
        self.token = token
        self.client = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings) -> "GraphGroups":
        return cls(msal_token(settings), settings.graph_url)

    def member_of(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """Which of `groups` the user is a (transitive) member of. Raises on any HTTP or token failure."""
        found: set[str] = set()
        headers = {"Authorization": f"Bearer {self.token()}"}
        for start in range(0, len(groups), BATCH):
            response = self.client.post(f"users/{httpx.URL(user_id)}/checkMemberGroups", headers=headers,
                                        json={"groupIds": list(groups[start:start + BATCH])})
            response.raise_for_status()
            found |= set(response.json().get("value") or [])
        return found & set(groups)


def msal_token(settings) -> Callable[[], str]:
    """An app-only Graph token for the bot's Entra app (msal caches and renews it)."""
    import msal

    if not (settings.microsoft_app_id and settings.microsoft_app_password and settings.microsoft_app_tenant_id):
        raise ValueError("POLICYBOT_GRAPH_GROUPS needs MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD and "
                         "MICROSOFT_APP_TENANT_ID (Graph's app-only tokens are issued per tenant)")
    app = msal.ConfidentialClientApplication(
        settings.microsoft_app_id, client_credential=settings.microsoft_app_password,
        authority=f"{settings.graph_authority.rstrip('/')}/{settings.microsoft_app_tenant_id}")

    def token() -> str:
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        if "access_token" not in result:
            raise PermissionError(f"no Graph token: {result.get('error')}: {result.get('error_description')}")
        return result["access_token"]

    return token
