"""Per-user question rate limit in Redis (a fixed one-minute window), shared by every bot process.

The check is a small Lua function (RATE_LUA) so that the answer cache can run it in the same round trip as its
read (bot.cache.AnswerCache.lookup); `allow` runs it alone."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

WINDOW_TTL_S = 120  # a window's counter outlives its minute, then goes

# rate_allows(key, limit, ttl): count this question in its window; true while the count is within the limit.
RATE_LUA = """
local function rate_allows(key, limit, ttl)
  local count = redis.call('INCR', key)
  redis.call('EXPIRE', key, ttl)
  return count <= tonumber(limit)
end
"""
_ALLOW = RATE_LUA + "return rate_allows(KEYS[1], ARGV[1], ARGV[2]) and 1 or 0"


@dataclass(frozen=True)
class Check:
    """One question to count against `user_key`'s limit of `per_minute` (see `check`)."""
    user_key: str
    per_minute: int
    now: float | None = None

    @property
    def key(self) -> str:
        window = int((self.now if self.now is not None else time.time()) // 60)
        return f"policybot:rate:{self.user_key}:{window}"


def check(user_key: str, per_minute: int, now: float | None = None) -> Check | None:
    """The check to run for a question; None when there is no limit (per_minute <= 0)."""
    return Check(user_key, per_minute, now) if per_minute > 0 else None


def allow(client: redis.Redis, user_key: str, per_minute: int, now: float | None = None) -> bool:
    """True when the user may ask now. Redis down: allowed (the limit protects us, it must not lock people out)."""
    rate = check(user_key, per_minute, now)
    if rate is None:
        return True
    try:
        return bool(client.eval(_ALLOW, 1, rate.key, rate.per_minute, WINDOW_TTL_S))
    except redis.RedisError as err:
        unavailable(err)
        return True


def unavailable(err: Exception) -> None:
    log.warning("rate limit unavailable, allowing: %s", err)
