"""Per-user question rate limit in Redis (a fixed one-minute window), shared by every bot process."""

from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger(__name__)


def allow(client: redis.Redis, user_key: str, per_minute: int, now: float | None = None) -> bool:
    """True when the user may ask now. Redis down: allowed (the limit protects us, it must not lock people out)."""
    if per_minute <= 0:
        return True
    window = int((now if now is not None else time.time()) // 60)
    key = f"policybot:rate:{user_key}:{window}"
    try:
        with client.pipeline() as pipe:
            count, _ = pipe.incr(key).expire(key, 120).execute()
    except redis.RedisError as err:
        log.warning("rate limit unavailable, allowing: %s", err)
        return True
    return int(count) <= per_minute
