"""Slack user-group membership for document audiences (bot/audiences.py's GroupLookup for Slack users).

`usergroups.users.list` gives a group's members (scope usergroups:read); handles (`hr-leads`) are turned into
ids with `usergroups.list`. Each group's member list is kept in this process for `ttl_s`, so one group is
fetched once per period however many people ask (the methods are Slack's Tier 2: about 20 calls a minute).
The core is synchronous and calls this from its worker threads: slack_sdk's synchronous WebClient.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from slack_sdk import WebClient

_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


class SlackGroups:
    kind = "slack_groups"

    def __init__(self, client: WebClient, ttl_s: float = 300.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._handles: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "SlackGroups":
        base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
        return cls(WebClient(token=settings.slack_bot_token, base_url=base_url, timeout=10),
                   ttl_s=settings.audience_ttl_s)

    def member_of(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """Which of `groups` (handles or ids, as the audiences file writes them) have `user_id`. Raises
        SlackApiError (or a connection error) when Slack does not answer: the caller falls back to everyone."""
        return {group for group in groups if user_id in self._group_members(self._group_id(group))}

    def _group_id(self, group: str) -> str:
        if _GROUP_ID.match(group):
            return group
        handle = group.lstrip("@").lower()
        with self._lock:
            cached = self._handles
        if cached is None or time.monotonic() - cached[0] > self.ttl_s or handle not in cached[1]:
            response = self.client.usergroups_list()
            handles = {g.get("handle", "").lower(): g["id"] for g in response.get("usergroups") or [] if g.get("id")}
            cached = (time.monotonic(), handles)
            with self._lock:
                self._handles = cached
        if handle not in cached[1]:
            raise LookupError(f"no Slack user group with the handle @{handle}; check POLICYBOT_AUDIENCES_FILE")
        return cached[1][handle]

    def _group_members(self, group_id: str) -> frozenset[str]:
        with self._lock:
            cached = self._members.get(group_id)
        if cached is not None and time.monotonic() - cached[0] <= self.ttl_s:
            return cached[1]
        response = self.client.usergroups_users_list(usergroup=group_id)
        members = frozenset(response.get("users") or [])
        with self._lock:
            self._members[group_id] = (time.monotonic(), members)
        return members
