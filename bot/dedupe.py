"""Exactly-once handling of platform events that may be delivered more than once (Slack retries, Teams
resends), across any number of bot processes: the first process to claim an event id in Redis handles it."""

from __future__ import annotations

import logging

import redis

from bot import metrics

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 24 * 3600  # Slack retries within minutes; a day is generous and cheap


def claim(client: redis.Redis, platform: str, event_id: str, ttl_s: int = DEFAULT_TTL_S) -> bool:
    """True for the first claim of (platform, event_id); False for every later one.

    With Redis down the event is handled (answering twice is better than not answering) and that is logged.
    """
    try:
        first = bool(client.set(f"policybot:event:{platform}:{event_id}", 1, nx=True, ex=ttl_s))
    except redis.RedisError as err:
        log.warning("dedupe unavailable, handling event %s without it: %s", event_id, err)
        return True
    if not first:
        metrics.events_deduplicated.labels(platform).inc()
    return first
