"""Sign-in to the admin console (adapters/admin): one-time links and sessions, in Redis (both may be lost:
the admin asks for a new link).

- A link token is issued only to an admin (POLICYBOT_ADMINS), is valid for 10 minutes and is used once
  (GETDEL: two clicks, even on two bot processes, cannot both sign in).
- Redeeming it starts a session: a random session token (the cookie) with its own CSRF token, valid 8 hours.
  The user's admin rights are checked again on every request, so removing someone from POLICYBOT_ADMINS
  signs them out at the next restart of the settings.
- Redis keys hold a SHA-256 of each token, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import redis

from bot.config import Settings

LINK_TTL_S = 10 * 60
SESSION_TTL_S = 8 * 3600
_LINK = "policybot:console:link:"
_SESSION = "policybot:console:session:"


@dataclass(frozen=True)
class ConsoleSession:
    token: str  # the cookie's value
    user_id: str
    csrf: str  # every form carries it

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf.encode(), str(submitted).encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleAuth:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self.settings = settings

    def is_admin(self, user_id: str) -> bool:
        return bool(user_id) and user_id in self.settings.admins

    def issue_link(self, user_id: str) -> str | None:
        """A one-time sign-in token for an admin; None for anyone else."""
        if not self.is_admin(user_id):
            return None
        token = secrets.token_urlsafe(32)
        self._redis.set(_LINK + _digest(token), user_id, ex=LINK_TTL_S)
        return token

    def redeem(self, token: str) -> ConsoleSession | None:
        """Use a link token (once) and start a session; None when it is unknown, expired, used or not an admin's."""
        if not token or len(token) > 200:
            return None
        user = self._redis.getdel(_LINK + _digest(token))
        if user is None:
            return None
        user_id = user.decode() if isinstance(user, bytes) else str(user)
        if not self.is_admin(user_id):
            return None
        session = ConsoleSession(secrets.token_urlsafe(32), user_id, secrets.token_urlsafe(24))
        self._redis.set(_SESSION + _digest(session.token), json.dumps({"user": user_id, "csrf": session.csrf}),
                        ex=SESSION_TTL_S)
        return session

    def session(self, token: str | None) -> ConsoleSession | None:
        if not token or len(token) > 200:
            return None
        raw = self._redis.get(_SESSION + _digest(token))
        if raw is None:
            return None
        data = json.loads(raw)
        if not self.is_admin(data.get("user", "")):
            return None
        return ConsoleSession(token, data["user"], data["csrf"])

    def end(self, token: str) -> None:
        self._redis.delete(_SESSION + _digest(token))
