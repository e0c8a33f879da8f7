"""Exactly-once handling of platform events that may be delivered more than once (Slack retries, Teams
resends), across any number of bot processes: the first process to claim an event id in Redis handles it."""

from __future__ import annotations

import logging

import redis
import redis.asyncio as aioredis

from bot import metrics

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 24 * 3600  # Slack retries within minutes; a day is generous and cheap


def event_key(platform: str, event_id: str) -> str:
    return f"policybot:event:{platform}:{event_id}"


async def claim(client: aioredis.Redis, platform: str, event_id: str, ttl_s: int = DEFAULT_TTL_S) -> bool:
    """True for the first claim of (platform, event_id); False for every later one. Run on the adapters' event
    loop (redis.asyncio: no thread hop for one command).

    With Redis down the event is handled (answering twice is better than not answering) and that is logged.
    """
    try:
        first = bool(await client.set(event_key(platform, event_id), 1, nx=True, ex=ttl_s))
    except (redis.RedisError, OSError) as err:
        log.warning("dedupe unavailable, handling event %s without it: %s", event_id, err)
        return True
    if not first:
        metrics.events_deduplicated.labels(platform).inc()
    return first
